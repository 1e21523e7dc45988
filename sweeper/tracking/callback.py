"""Tune's trial events mirrored into MLflow: one child run per model, its reports in batches.

A trial trains one seed of a configuration, or its seeds together, and
reports each model's values under `trainables.trial.model_key(seed, ...)`.
Every model gets its own child run (params `objective`, that objective's
weights, `seed` and every setting; the same metric names and step
histories), tagged with the Ray trial that trains it, so the analysis and
the MLflow UI never need to know how many models a trial held.

Every write goes through a `TrackingBuffer`: a tracking server that goes
away mid-sweep does not stop the trials, their writes are kept in order (and
in the sweep folder) and flushed when it is back. Reports wait there HOLD_S
for the next ones, so each run's reports go out together, one request per
run rather than one per model and report: what a store takes per second is
mostly requests, not values. The placement tags go with a run's first report,
and again only when its trial moves.

A trial resumed from a checkpoint reports again the steps between that
checkpoint and the crash; those steps are already in MLflow, so results at
or below the last step queued or logged are skipped and each history stays
continuous, with no step twice.

A trial that a scheduler (ASHA, or the Pareto scheduler) stopped before its
last step ends KILLED with the tag `stopped_early_at_step`, the step of the
rung it was stopped at: its models are not trained to the end, so `select`,
`report` and `export`, which take FINISHED runs, leave them out (and say so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from sweeper import object_store
from sweeper.console import last_line
from sweeper.tags import (
    CHECKPOINT_TAG,
    ERROR_TAG,
    OBJECTIVE_PARAM,
    PARENT_TAG,
    PLACEMENT_TAGS,
    ROLE_TAG,
    ROLE_TRIAL,
    SEED_PARAM,
    SEED_TAG,
    STOPPED_EARLY_TAG,
    SWEEP_TAG,
    TRIAL_INDEX_PARAM,
    TRIAL_TAG,
)
from sweeper.tracking.buffer import TrackingBuffer
from sweeper.tracking.client import SweepTracking, flatten, library_versions, run_key
from trainables.trial import (
    MODEL_ERROR,
    MODELS_FAILED,
    ModelSpec,
    TrialSpec,
    model_folder,
    repeat_index,
    split_model_key,
)

# How long a report waits in the buffer for the next ones: each run's reports of that time go out as one
# request, instead of one request per model per report (docs/benchmarks.md, section 'Tracking').
HOLD_S = 1.0
# What Tune adds to every result; the rest is what the trainable reported.
TUNE_KEYS = set(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint"}


def reported_metrics(result: dict[str, Any], step: int, timestamp_ms: int) -> list[Metric]:
    return [
        Metric(key, float(value), timestamp_ms, step)
        for key, value in result.items()
        if key not in TUNE_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def model_results(spec: TrialSpec, result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Each model's own result: its keys without their prefix, with the values of the whole trial
    that every model shares (the step, a restore, the placement) and its share of the trial's
    images/s (so the runs compare across sweeps of any pack size). The trial's seed means stay out:
    they are the searcher's, not a model's."""
    own: dict[int, dict[str, Any]] = {seed: {} for seed in spec.seeds}
    shared = {}
    for key, value in result.items():
        split = split_model_key(key)
        if split is not None:
            if split[0] in own:
                own[split[0]][split[1]] = value
        elif key in ("step", "restored_from_step", *PLACEMENT_TAGS):
            shared[key] = value
    training = len(spec.seeds) - int(result.get(MODELS_FAILED, 0))
    if "images_per_sec" in result and training > 0:
        shared["images_per_sec"] = float(result["images_per_sec"]) / training
    return {seed: {**shared, **values} for seed, values in own.items()}


def error_reason(trial: Trial) -> str:
    """The last line of the trial's traceback: the exception and its message.

    Tune appends each failure to the trial's local error file just before it calls `on_trial_error`, and
    copies that file to the sweep's storage only later: read from storage, a trial's first failure (all
    there is with `failure.max_failures: 0`) would have no message yet, and a later one the previous one's.
    """
    try:
        local = Path(trial.error_file) if trial.error_file else None
        text = local.read_text() if local is not None and local.is_file() else trial.get_error() or ""
    except (OSError, MlflowException):
        text = ""
    return last_line(text)


class MLflowTrialCallback(Callback):
    """Tune callback that writes every model of every trial into its child run."""

    def __init__(self, tracking: SweepTracking, folder: Path | None = None, echo: Callable[[str], None] = print) -> None:
        self.tracking = tracking
        self.folder = folder
        self.echo = echo
        self.buffer = TrackingBuffer(tracking, folder, echo, hold_s=HOLD_S)
        self._opened: set[str] = set()
        self._ended: set[str] = set()  # models that failed while their seed-mates train on
        self._last_step: dict[str, int] = {}  # the last step queued, per run key
        self._placement: dict[str, dict[str, str]] = {}  # the placement tags queued last, per run key

    def __getstate__(self) -> dict[str, Any]:
        # What MLflow and the pending file hold is the truth after a restore, not this process's memory.
        return {"tracking": self.tracking, "folder": self.folder, "echo": self.echo}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tracking"], state.get("folder"), state.get("echo", print))

    def setup(self, **info: Any) -> None:
        """At every start, a resumed one included: first what an earlier driver could not write."""
        for op in self.buffer.load():
            if op["op"] == "open":
                self._opened.add(op["run"])
            elif op["op"] == "metrics":
                self._last_step[op["run"]] = max(self._last_step.get(op["run"], -1), op["step"])
        self.buffer.flush(force=True)

    # -- the runs of a trial -----------------------------------------------------------------
    def _models(self, trial: Trial) -> list[tuple[str, ModelSpec, int]]:
        """(run key, model, repeat index of its seed) of each model the trial trains."""
        offset = int(trial.config["settings"]["training"]["seed_offset"])
        models = TrialSpec.from_config(trial.config).models()
        return [(run_key(trial.trial_id, m.seed), m, repeat_index(offset, m.seed)) for m in models]

    def _open(self, trial: Trial, key: str, model: ModelSpec, index: int) -> str:
        if key not in self._opened:
            tags = {
                PARENT_TAG: self.tracking.parent_run_id,
                SWEEP_TAG: self.tracking.sweep_id,
                TRIAL_TAG: trial.trial_id,
                ROLE_TAG: ROLE_TRIAL,
                SEED_TAG: str(model.seed),
            }
            params = {
                OBJECTIVE_PARAM: model.configuration.objective,
                **{name: str(value) for name, value in model.configuration.weights},
                SEED_PARAM: str(model.seed),
                TRIAL_INDEX_PARAM: str(index),
                **flatten("", trial.config["settings"]),
                **library_versions(),
            }
            self.buffer.add("open", key, name=model.label(), tags=tags)
            self.buffer.add("params", key, params=params)
            self._opened.add(key)
        return key

    def _running(self, trial: Trial) -> list[tuple[str, ModelSpec]]:
        """The trial's models whose runs are open and not ended (a failed model of a trial is ended)."""
        out = []
        for key, model, index in self._models(trial):
            self._open(trial, key, model, index)
            if key not in self._ended:
                out.append((key, model))
        return out

    def _end(self, key: str, status: str, reason: str | None = None) -> None:
        if reason is not None:
            self.buffer.add("tag", key, key=ERROR_TAG, value=reason[:5000])
        self.buffer.add("terminate", key, status=status)
        self._ended.add(key)

    # -- Tune's events -----------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        for key, _ in self._running(trial):
            self.buffer.add("status", key, status=RunStatus.to_string(RunStatus.RUNNING))
        self.buffer.flush()

    on_trial_restore = on_trial_start

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        spec = TrialSpec.from_config(trial.config)
        per_model = model_results(spec, result)
        for key, model in self._running(trial):
            values = per_model[model.seed]
            step = int(values.get("step", result.get("training_iteration", 0)))
            if step > self._last_step.get(key, -1):
                self._last_step[key] = step
                # "step" last: the last step MLflow holds says which reports are in, even one written in parts.
                metrics = reported_metrics(values, step, int(time.time() * 1000))
                metrics.sort(key=lambda m: m.key == "step")
                placement = {k: str(values[k]) for k in PLACEMENT_TAGS if k in values}
                self.buffer.add(
                    "metrics",
                    key,
                    step=step,
                    metrics=[[m.key, m.value, m.timestamp, m.step] for m in metrics],
                    # The same tags every report: sent again only when the trial moved (a restore elsewhere).
                    tags={} if placement == self._placement.get(key) else placement,
                )
                self._placement[key] = placement
            if MODEL_ERROR in values:
                self._end(key, "FAILED", str(values[MODEL_ERROR]))
        self.buffer.flush()

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Any, **info: Any) -> None:
        where = object_store.uri_of(checkpoint.filesystem, checkpoint.path)  # s3://... when not a local folder
        for key, model in self._running(trial):
            self.buffer.add("tag", key, key=CHECKPOINT_TAG, value=f"{where}/{model_folder(model.seed)}")
        self.buffer.flush()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        step = int((trial.last_result or {}).get("step", 0))
        stopped_early = step < int(trial.config["settings"]["training"]["steps"])
        for key, _ in self._running(trial):
            if stopped_early:
                self.buffer.add("tag", key, key=STOPPED_EARLY_TAG, value=str(step))
            self._end(key, "KILLED" if stopped_early else "FINISHED")
        self.buffer.flush()

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        reason = error_reason(trial)
        for key, _ in self._running(trial):
            self._end(key, "FAILED", reason)
        self.buffer.flush()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Between events too: a server that comes back while every trial is evaluating gets its writes."""
        if self.buffer.pending:
            self.buffer.flush()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """One last try; what is left stays in the pending file for `finish_tracking` (or a resume)."""
        self.buffer.flush(force=True)
