"""The Ray Tune function trainable: the one `Trainer`, driven by Tune's report and checkpoint API.

Tune hands every trial a config dict, read once as a `TrialSpec`
(`trainables.trial`): the seeds it trains as one stacked model, one or
several. It reports as `trainables.report` describes. Only `ray.tune` is
used here: `ray.train.report` fails under Tune since Train V2.
"""

from __future__ import annotations

import tempfile
from typing import Any

import ray
from ray import tune

from trainables.data import StoredImages
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
from trainables.trial import TrialSpec


def _next_boundary(step: int, every: int, last: int) -> int:
    return min(last, (step // every + 1) * every)


def _results(trainer: Trainer, steps: int, evaluating: bool) -> dict[str, Any]:
    report = trainer.train(steps)
    if evaluating:
        for seed, values in report.models.items():
            values.update(trainer.evaluate(seed))
    return report.tune_metrics()


def train(config: dict[str, Any], stored: StoredImages | None = None) -> None:
    """One trial. `stored`: the dataset file's content, put once into Ray's object store by the
    driver (`sweeper.run.datasets`); None for the procedural dataset."""
    settings = TrialSettings.model_validate(config["settings"])
    trial = TrialSpec.from_config(config)
    context = ray.get_runtime_context()
    gpu_share = context.get_assigned_resources().get("GPU")
    trainer = Trainer(settings, trial.configuration, trial.seeds, stored, gpu_share)
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
        evaluating = bool(eval_settings.metrics) and (stop % eval_settings.every == 0 or stop == last)
        metrics = _results(trainer, stop - trainer.step, evaluating)
        metrics["step"] = trainer.step
        metrics.update(restored)
        metrics.update(placement)
        if trainer.step % training.checkpoint_every == 0 or trainer.step == last:
            with tempfile.TemporaryDirectory() as folder:
                trainer.save(folder)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)
