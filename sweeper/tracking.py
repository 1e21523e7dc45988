"""MLflow tracking from the driver: one parent run per sweep, one child run per trial.

Everything is logged from the driver through a Tune callback, so trials need
no MLflow access and a tracking store that takes one writer (SQLite) works.
Each trial's run is found again by its Ray trial id before one is created, so
a resumed sweep never opens a second run for a trial, and each report is
written as one batch.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from sweeper.config import SweepConfig, dump_config
from sweeper.errors import EnvironmentProblem
from trainables.trainable import TRIAL_INDEX_KEY, trial_seed

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
PARENT_TAG = "mlflow.parentRunId"
SWEEP_TAG = "sweep_id"
TRIAL_TAG = "ray_trial_id"
ROLE_TAG = "sweeper.role"
# What Tune adds to every result; the rest is what the trainable reported.
TUNE_KEYS = set(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint"}
PLACEMENT_KEYS = ("node_ip", "hostname", "ray_node_id", "gpu_ids")  # logged as tags of the trial's run
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
VERSIONED_PACKAGES = ("torch", "scikit-learn", "numpy", "ray", "optuna", "mlflow")


@contextmanager
def _fail_fast_http() -> Iterator[None]:
    """No retries with backoff while probing: an unreachable server should fail in seconds."""
    saved = {k: os.environ.get(k) for k in _PROBE_ENV}
    os.environ.update(_PROBE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(uri: str) -> MlflowClient:
    """A client for `uri`, or a clear error now, before anything is started."""
    try:
        client = MlflowClient(tracking_uri=uri)
        with _fail_fast_http():
            client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EnvironmentProblem(f"tracking URI {uri!r} cannot be opened: {first_line}") from exc
    return client


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it so the MLflow UI opens on its runs table."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: "custom_model_development"})
    if experiment.lifecycle_stage == "deleted":
        raise EnvironmentProblem(f"MLflow experiment {name!r} is deleted; restore it or choose another name")
    return experiment.experiment_id


def flatten(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    """Nested settings as dotted MLflow params (`training.lr` = `0.0001`)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(name, value))
        else:
            out[name] = str(list(value) if isinstance(value, tuple) else value)[:500]
    return out


def library_versions() -> dict[str, str]:
    """Recorded with every run: the reference estimators' defaults change across versions."""
    return {f"version.{name}": importlib.metadata.version(name) for name in VERSIONED_PACKAGES}


def reported_metrics(result: dict[str, Any], step: int, timestamp_ms: int) -> list[Metric]:
    return [
        Metric(key, float(value), timestamp_ms, step)
        for key, value in result.items()
        if key not in TUNE_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SweepTracking:
    """The sweep's parent run and the lookup of its trials' child runs.

    Tune pickles its callbacks with the experiment state, and a resumed sweep
    unpickles them: only the identifiers are pickled and the client is opened
    again on first use.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    @classmethod
    def start(cls, client: MlflowClient, config: SweepConfig, sweep_id: str) -> SweepTracking:
        experiment_id = ensure_experiment(client, config.tracking.experiment or config.name)
        run = client.create_run(
            experiment_id,
            run_name=sweep_id,
            tags={SWEEP_TAG: sweep_id, ROLE_TAG: "sweep", "mlflow.note.content": config.description},
        )
        tracking = cls(client.tracking_uri, experiment_id, run.info.run_id, sweep_id)
        search = config.search
        params = {
            "search.kind": search.kind,
            "search.metric": search.metric,
            "search.mode": search.mode,
            "search.seeds": str(search.seeds),
            "search.beta": str(search.beta),
            "search.capacity": str(search.capacity),
            **flatten("", config.trial_settings().model_dump(mode="json")),
            **library_versions(),
        }
        tracking.log_params(run.info.run_id, params)
        client.log_text(run.info.run_id, dump_config(config), "config.yaml")
        return tracking

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        items = [Param(k, v) for k, v in params.items()]
        for batch in _batches(items, 100):
            self.client.log_batch(run_id, params=batch)

    def trial_run_id(self, trial: Trial) -> str:
        """The trial's child run: found by its Ray trial id, created only if there is none."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{SWEEP_TAG} = '{self.sweep_id}' and tags.{TRIAL_TAG} = '{trial.trial_id}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        config = trial.config
        seed = trial_seed(config)
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"beta={config['beta']:.4g} C={config['capacity']:.4g} seed={seed}",
            tags={
                PARENT_TAG: self.parent_run_id,
                SWEEP_TAG: self.sweep_id,
                TRIAL_TAG: trial.trial_id,
                ROLE_TAG: "trial",
                "seed": str(seed),
            },
        )
        params = {
            "beta": str(config["beta"]),
            "capacity": str(config["capacity"]),
            "seed": str(seed),
            "trial_index": str(config.get(TRIAL_INDEX_KEY, 0)),
            **flatten("", config["settings"]),
            **library_versions(),
        }
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def reopen(self) -> None:
        """Mark the parent run as running again, for a resumed sweep."""
        self.client.update_run(self.parent_run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.parent_run_id, status)


class MLflowTrialCallback(Callback):
    """Tune callback that mirrors every trial into its child run, one batch per report.

    A trial resumed from a checkpoint reports again the steps between that
    checkpoint and the crash; those steps are already in MLflow, so results at
    or below the run's last logged step are skipped and each history stays
    continuous, with no step twice.
    """

    def __init__(self, tracking: SweepTracking) -> None:
        self.tracking = tracking
        self._runs: dict[str, str] = {}
        self._last_step: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # What MLflow holds is the truth after a restore, not this process's memory of it.
        return {"tracking": self.tracking}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tracking"])

    def _run_id(self, trial: Trial) -> str:
        if trial.trial_id not in self._runs:
            run_id = self.tracking.trial_run_id(trial)
            logged = self.tracking.client.get_run(run_id).data.metrics.get("step")
            self._runs[trial.trial_id] = run_id
            self._last_step[run_id] = int(logged) if logged is not None else -1
        return self._runs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run_id = self._run_id(trial)
        self.tracking.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    on_trial_restore = on_trial_start

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        run_id = self._run_id(trial)
        step = int(result.get("step", result.get("training_iteration", 0)))
        if step <= self._last_step[run_id]:
            return
        self._last_step[run_id] = step
        metrics = reported_metrics(result, step, int(time.time() * 1000))
        tags = [RunTag(key, str(result[key])) for key in PLACEMENT_KEYS if key in result]
        for number, batch in enumerate(_batches(metrics, MAX_BATCH)):
            self.tracking.client.log_batch(run_id, metrics=batch, tags=tags if number == 0 else [])

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Any, **info: Any) -> None:
        self.tracking.client.set_tag(self._run_id(trial), "checkpoint", checkpoint.path)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.tracking.client.set_terminated(self._run_id(trial), "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run_id = self._run_id(trial)
        self.tracking.client.set_tag(run_id, "error", error_reason(trial))
        self.tracking.client.set_terminated(run_id, "FAILED")


def error_reason(trial: Trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    try:
        text = trial.get_error() or ""
    except (OSError, MlflowException):
        text = ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[-1] if lines else "trial failed without an error message")[:5000]
