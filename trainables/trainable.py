"""The Ray Tune function trainable: a Trainer driven by Tune's report and checkpoint API.

Tune hands every trial a config dict, read once as a `TrialSpec`
(`trainables.trial`). Only `ray.tune` is used here: `ray.train.report` fails
under Tune since Train V2.
"""

from __future__ import annotations

import tempfile
from typing import Any

import ray
from ray import tune

from trainables.data import StoredImages
from trainables.evaluate import evaluate
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
from trainables.trial import TrialSpec


def _next_boundary(step: int, every: int, last: int) -> int:
    return min(last, (step // every + 1) * every)


def train(config: dict[str, Any], stored: StoredImages | None = None) -> None:
    """One trial. `stored`: the dataset file's content, put once into Ray's object store by the
    driver (`sweeper.datasets`); None for the procedural dataset."""
    settings = TrialSettings.model_validate(config["settings"])
    trial = TrialSpec.from_config(config)
    context = ray.get_runtime_context()
    gpu_share = context.get_assigned_resources().get("GPU")
    trainer = Trainer(
        settings, beta=trial.beta, capacity=trial.capacity, seed=trial.seed, stored=stored, gpu_share=gpu_share
    )
    checkpoint = tune.get_checkpoint()
    restored: dict[str, int] = {}
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load(folder)
        # Reported with every later result, so a resumed trial says so in MLflow.
        restored["restored_from_step"] = trainer.step

    # Where the trial runs, for the MLflow tags: which node, and which GPUs it shares.
    placement = {"ray_node_id": context.get_node_id(), "gpu_ids": ",".join(map(str, ray.get_gpu_ids()))}
    training, eval_settings = settings.training, settings.eval
    last = training.steps
    while trainer.step < last:
        stop = min(
            _next_boundary(trainer.step, every, last)
            for every in (training.report_every, training.checkpoint_every, eval_settings.every)
        )
        metrics: dict[str, Any] = trainer.train(stop - trainer.step)
        metrics["step"] = trainer.step
        metrics.update(restored)
        metrics.update(placement)
        if eval_settings.metrics and (trainer.step % eval_settings.every == 0 or trainer.step == last):
            metrics.update(evaluate(trainer.model, trainer.dataset, eval_settings, trainer.eval_rng()))
        if trainer.step % training.checkpoint_every == 0 or trainer.step == last:
            with tempfile.TemporaryDirectory() as folder:
                trainer.save(folder)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)
