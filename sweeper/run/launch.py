"""Start a sweep: check everything it needs, then run a Ray Tune Tuner over the search.

Order matters for "nothing half-created": the config is validated and
checked against this machine (`sweeper.config.check_machine`) by the
caller, then the tracking store and the Ray address are checked, Ray is
started or joined, the nodes' access to the checkpoint storage is probed,
every node's object store is checked to hold the dataset and a dataset
file is read; only then are the MLflow parent run and, last, the sweep
folder created.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import TrialScheduler

from sweeper.config import (
    SweepConfig,
    check_machine,
    dump_config,
    effective_ray_address,
    effective_tracking_uri,
    load_config,
)
from sweeper.record import RESOLVED_CONFIG, SweepRecord, write_atomically
from sweeper.run import space
from sweeper.run.cluster import (
    check_node_memory,
    check_object_store,
    check_ray_address,
    check_shared_storage,
    start_ray,
)
from sweeper.run.datasets import dataset_name, node_bytes, with_dataset
from sweeper.run.pickles import StateDigests, check_state
from sweeper.run.progress import ProgressCallback
from sweeper.run.rungs import RungRecords, keeps_rungs, load_records
from sweeper.tracking.callback import MLflowTrialCallback
from sweeper.tracking.client import SweepTracking, connect, finish_tracking
from trainables.trainable import train
from trainables.trial import TrialSpec

def new_sweep_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def absolute_tracking_uri(uri: str) -> str:
    """Pin a relative SQLite path to the current folder, so the UI hint and later commands agree."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def storage_root(config: SweepConfig) -> Path:
    return Path(config.storage).expanduser().resolve()


def check_checkpoint_storage(storage: Path, checkpoints: str | None) -> None:
    """Every node must reach where trials checkpoint: the object store, or the shared folder."""
    if checkpoints:
        check_object_store(checkpoints)
    else:
        check_shared_storage(storage)


@dataclass
class SweepOutcome:
    record: SweepRecord
    results: tune.ResultGrid
    metric: str  # the search metric, shown in the summary
    unwritten: int = 0  # tracking writes the server did not take by the end; kept in the sweep folder


def launch(config: SweepConfig, address: str | None = None, echo: Callable[[str], None] = print) -> SweepOutcome:
    address = effective_ray_address(config, address)
    tracking_uri = absolute_tracking_uri(effective_tracking_uri(config))
    if address:
        check_ray_address(address)
    space.check_search(config)
    client = connect(tracking_uri)

    sweep_id = new_sweep_id(config.name)
    sweep_dir = storage_root(config) / sweep_id
    echo(f"sweep {sweep_id}: {space.describe_count(config)}, tracking {tracking_uri}")
    started_here = start_ray(address)
    try:
        check_checkpoint_storage(storage_root(config), config.checkpoints)
        trainable = _trainable(config)  # reads and checks a dataset file: a bad one leaves nothing behind
        tracking = SweepTracking.start(client, config, sweep_id)  # before the folder: a refused write leaves none
        sweep_dir.mkdir(parents=True)
        record = SweepRecord(
            sweep_id=sweep_id,
            name=config.name,
            tracking_uri=tracking_uri,
            experiment_id=tracking.experiment_id,
            parent_run_id=tracking.parent_run_id,
            storage=str(storage_root(config)),
            created=time.time(),
            checkpoints=config.checkpoints,
        )
        write_atomically(sweep_dir / RESOLVED_CONFIG, dump_config(config))
        record.write(sweep_dir)
        progress = ProgressCallback(space.trial_count(config), config.training.steps, config.search.metrics[0], echo)
        scheduler = space.scheduler(config)
        # The rung records are written at each save before the digests of that save's files are taken.
        rung_records = [RungRecords(scheduler, record.experiment_path)] if keeps_rungs(scheduler) else []
        digests = StateDigests(sweep_dir, record.experiment_path)  # of the state files resume will unpickle
        callbacks = [MLflowTrialCallback(tracking, sweep_dir, echo), progress, *rung_records, digests]
        tuner = _new_tuner(config, trainable, scheduler, sweep_dir, record.experiment_path, callbacks)
        results, unwritten = _fit(tuner, tracking, sweep_dir, config.tracking.wait_s, echo)
        return SweepOutcome(record, results, config.search.metrics[0], unwritten)
    finally:
        if started_here:
            ray.shutdown()


def resume(sweep_dir: Path, address: str | None = None, echo: Callable[[str], None] = print) -> SweepOutcome:
    """Continue a sweep whose driver died: Tune's stored state, the same MLflow runs.

    Finished trials stay finished, unfinished ones restart from their last
    checkpoint, and the Optuna study continues from its journal. The callbacks
    come back from Tune's stored state; they reopen the MLflow runs by tag, and
    give the scheduler back its rung records.
    """
    record = SweepRecord.read(sweep_dir)
    check_state(record)  # before Tune unpickles anything of the folder
    resolved = sweep_dir / RESOLVED_CONFIG
    # Its storage is where the sweep is, wherever the config's relative `storage` pointed when it started.
    config = load_config(resolved).model_copy(update={"storage": record.storage})
    config = check_machine(config, str(resolved))
    load_records(space.scheduler(config), record.experiment_path)  # unreadable rung records are refused before Ray starts
    address = effective_ray_address(config, address)
    if address:
        check_ray_address(address)
    connect(record.tracking_uri)
    tracking = SweepTracking(record.tracking_uri, record.experiment_id, record.parent_run_id, record.sweep_id)
    echo(f"resuming sweep {record.sweep_id}, tracking {record.tracking_uri}")
    started_here = start_ray(address)
    try:
        check_checkpoint_storage(Path(record.storage), record.checkpoints)
        tuner = tune.Tuner.restore(
            record.experiment_path, trainable=_trainable(config), resume_unfinished=True, resume_errored=False
        )
        tracking.reopen()
        results, unwritten = _fit(tuner, tracking, sweep_dir, config.tracking.wait_s, echo)
        return SweepOutcome(record, results, config.search.metrics[0], unwritten)
    finally:
        if started_here:
            ray.shutdown()


def _fit(
    tuner: tune.Tuner, tracking: SweepTracking, sweep_dir: Path, wait_s: float, echo: Callable[[str], None]
) -> tuple[tune.ResultGrid, int]:
    """Run the sweep; the parent run ends FINISHED, FAILED (a trial failed) or KILLED.

    Returns the results and the number of tracking writes the server did not take.
    """
    # Scores (disent/...) come only with evaluations, not with every report, and Tune would
    # refuse a report without the search metric. The searcher (behind the Repeater) reads only
    # final results, which always carry an evaluation, and ASHA skips results without it.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    try:
        results = tuner.fit()
    except BaseException:
        finish_tracking(tracking, sweep_dir, "KILLED", min(wait_s, 10.0), echo)
        raise
    status = "FINISHED" if all(r.error is None for r in results) else "FAILED"
    return results, finish_tracking(tracking, sweep_dir, status, wait_s, echo)


def trial_name(trial: tune.experiment.Trial) -> str:
    """Short, readable trial folder names: the searched values, not every setting."""
    return f"{trial.trial_id}_{TrialSpec.from_config(trial.config).label().replace(' ', '_')}"


def _trainable(config: SweepConfig) -> Any:
    # A dataset file is read here, once, and shared with the trials through the object store;
    # first every node is checked to hold it, so a dataset too large is refused before it is read.
    check_node_memory(node_bytes(config), dataset_name(config))
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    return tune.with_resources(with_dataset(train, config), resources)


def _new_tuner(
    config: SweepConfig,
    trainable: Any,
    scheduler: TrialScheduler,
    sweep_dir: Path,
    experiment: str,
    callbacks: list[tune.Callback],
) -> tune.Tuner:
    """The Tuner; the Optuna journal goes into `sweep_dir`, Tune's own state into `experiment` (the
    same folder, or an object-store URI)."""
    search = config.search
    storage_path, name = experiment.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        param_space=space.param_space(config),
        tune_config=tune.TuneConfig(
            # With a searcher, metric and mode belong to the searcher and the scheduler, not here.
            search_alg=space.searcher(config, sweep_dir, study_name=sweep_dir.name),
            scheduler=scheduler,
            num_samples=space.num_samples(config),
            max_concurrent_trials=search.max_concurrent,
            reuse_actors=True,  # keeps each worker's imports and rendered dataset between trials
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=config.failure.max_failures),
            verbose=0,  # the ProgressCallback prints one line per event instead
        ),
    )
