"""MLflow tracking from the driver: one parent run per sweep, one child run per trial.

Everything is logged from the driver through a Tune callback, so trials need
no MLflow access and a tracking store that takes one writer (SQLite) works.
Each trial's run is found again by its Ray trial id before one is created, so
a resumed sweep never opens a second run for a trial, and each report is
written as one batch.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from sweeper import object_store
from sweeper.config import SweepConfig, dump_config
from sweeper.errors import EnvironmentProblem
from sweeper.tracking_buffer import PARENT, TrackingBuffer, fail_fast_http, redact, short_reason
from trainables.trial import TRIAL_INDEX, TrialSpec

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
PARENT_TAG = "mlflow.parentRunId"
SWEEP_TAG = "sweep_id"
TRIAL_TAG = "ray_trial_id"
ROLE_TAG = "sweeper.role"
# What Tune adds to every result; the rest is what the trainable reported.
TUNE_KEYS = set(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint"}
PLACEMENT_KEYS = ("node_ip", "hostname", "ray_node_id", "gpu_ids")  # logged as tags of the trial's run
VERSIONED_PACKAGES = ("torch", "scikit-learn", "numpy", "ray", "optuna", "mlflow")
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def connect(uri: str) -> MlflowClient:
    """A client for `uri`, or a clear error now, before anything is started."""
    try:
        client = MlflowClient(tracking_uri=uri)
        with fail_fast_http():
            client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
        raise EnvironmentProblem(_connect_error(uri, exc)) from exc
    return client


def _connect_error(uri: str, exc: BaseException) -> str:
    """What went wrong opening `uri`, without the password; an authentication failure says so."""
    text = str(exc)
    status = getattr(exc, "get_http_status_code", lambda: None)()
    code = getattr(exc, "error_code", None)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if status == 401 or code == "UNAUTHENTICATED" or "error code 401" in text:
        if user and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
            return (
                f"tracking URI {redact(uri)!r}: authentication failed for user {user!r} (HTTP 401); "
                "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
        return (
            f"tracking URI {redact(uri)!r} requires authentication (HTTP 401); "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment"
        )
    if status == 403 or code == "PERMISSION_DENIED" or "error code 403" in text:
        return f"tracking URI {redact(uri)!r}: user {user!r} is not allowed to read experiments (HTTP 403)"
    return f"tracking URI {redact(uri)!r} cannot be opened: {short_reason(exc)}"


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
        """The sweep's experiment and parent run, with the config as params; a store that refuses
        the writes (a user with READ permission) is an EnvironmentProblem and leaves no run behind."""
        name = config.tracking.experiment or config.name
        run_id = None
        try:
            experiment_id = ensure_experiment(client, name)
            run_id = client.create_run(
                experiment_id,
                run_name=sweep_id,
                tags={SWEEP_TAG: sweep_id, ROLE_TAG: "sweep", "mlflow.note.content": config.description},
            ).info.run_id
            tracking = cls(client.tracking_uri, experiment_id, run_id, sweep_id)
            tracking._log_sweep(config)
        except MlflowException as exc:
            if run_id is not None:
                with contextlib.suppress(MlflowException):
                    client.delete_run(run_id)
            user = os.environ.get("MLFLOW_TRACKING_USERNAME")
            who = f"user {user!r}" if user else "this client"
            raise EnvironmentProblem(
                f"tracking URI {redact(client.tracking_uri)!r}: {who} cannot create the sweep's runs in "
                f"experiment {name!r} ({short_reason(exc)}); ask for EDIT permission on it, or set "
                "tracking.experiment to one of your own"
            ) from None
        return tracking

    def _log_sweep(self, config: SweepConfig) -> None:
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
        self.log_params(self.parent_run_id, params)
        self.client.log_text(self.parent_run_id, dump_config(config), "config.yaml")

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        items = [Param(k, v) for k, v in params.items()]
        for batch in _batches(items, 100):
            self.client.log_batch(run_id, params=batch)

    def find_trial_run(self, trial_id: str) -> str | None:
        """The trial's child run, found by its Ray trial id: a resumed sweep never opens a second one."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{SWEEP_TAG} = '{self.sweep_id}' and tags.{TRIAL_TAG} = '{trial_id}'",
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def create_trial_run(self, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def trial_run(self, trial: Trial) -> tuple[str, dict[str, str], dict[str, str]]:
        """The name, tags and params of a trial's child run."""
        config = trial.config
        spec = TrialSpec.from_config(config)
        seed = spec.seed
        name = spec.label()
        tags = {
            PARENT_TAG: self.parent_run_id,
            SWEEP_TAG: self.sweep_id,
            TRIAL_TAG: trial.trial_id,
            ROLE_TAG: "trial",
            "seed": str(seed),
        }
        params = {
            "beta": str(config["beta"]),
            "capacity": str(config["capacity"]),
            "seed": str(seed),
            "trial_index": str(config.get(TRIAL_INDEX, 0)),
            **flatten("", config["settings"]),
            **library_versions(),
        }
        return name, tags, params

    def reopen(self) -> None:
        """Mark the parent run as running again, for a resumed sweep."""
        self.client.update_run(self.parent_run_id, status=RunStatus.to_string(RunStatus.RUNNING))


class MLflowTrialCallback(Callback):
    """Tune callback that mirrors every trial into its child run, one batch per report.

    Every write goes through a `TrackingBuffer`: a tracking server that goes
    away mid-sweep does not stop the trials, their writes are kept in order
    (and in the sweep folder) and flushed when it is back.

    A trial resumed from a checkpoint reports again the steps between that
    checkpoint and the crash; those steps are already in MLflow, so results at
    or below the last step queued or logged are skipped and each history stays
    continuous, with no step twice.
    """

    def __init__(self, tracking: SweepTracking, folder: Path | None = None, echo: Callable[[str], None] = print) -> None:
        self.tracking = tracking
        self.folder = folder
        self.echo = echo
        self.buffer = TrackingBuffer(tracking, folder, echo)
        self._opened: set[str] = set()
        self._last_step: dict[str, int] = {}  # the last step queued, per trial

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

    def _open(self, trial: Trial) -> str:
        key = trial.trial_id
        if key not in self._opened:
            name, tags, params = self.tracking.trial_run(trial)
            self.buffer.add("open", key, name=name, tags=tags)
            self.buffer.add("params", key, params=params)
            self._opened.add(key)
        return key

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.buffer.add("status", self._open(trial), status=RunStatus.to_string(RunStatus.RUNNING))
        self.buffer.flush()

    on_trial_restore = on_trial_start

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        key = self._open(trial)
        step = int(result.get("step", result.get("training_iteration", 0)))
        if step > self._last_step.get(key, -1):
            self._last_step[key] = step
            # "step" last: the last step MLflow holds says which reports are in, even one written in parts.
            metrics = sorted(reported_metrics(result, step, int(time.time() * 1000)), key=lambda m: m.key == "step")
            self.buffer.add(
                "metrics",
                key,
                step=step,
                metrics=[[m.key, m.value, m.timestamp, m.step] for m in metrics],
                tags={k: str(result[k]) for k in PLACEMENT_KEYS if k in result},
            )
        self.buffer.flush()

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Any, **info: Any) -> None:
        where = object_store.uri_of(checkpoint.filesystem, checkpoint.path)  # s3://... when not a local folder
        self.buffer.add("tag", self._open(trial), key="checkpoint", value=where)
        self.buffer.flush()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.buffer.add("terminate", self._open(trial), status="FINISHED")
        self.buffer.flush()

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        key = self._open(trial)
        self.buffer.add("tag", key, key="error", value=error_reason(trial))
        self.buffer.add("terminate", key, status="FAILED")
        self.buffer.flush()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Between events too: a server that comes back while every trial is evaluating gets its writes."""
        if self.buffer.pending:
            self.buffer.flush()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """One last try; what is left stays in the pending file for `finish_tracking` (or a resume)."""
        self.buffer.flush(force=True)


def finish_tracking(
    tracking: SweepTracking, folder: Path, status: str, wait_s: float, echo: Callable[[str], None] = print
) -> int:
    """End the parent run after every write the trials left pending; returns the writes still unwritten.

    Waits up to `wait_s` for a tracking server that is away; whatever it still
    cannot take stays in the sweep folder's pending file, and the user is told.
    """
    buffer = TrackingBuffer(tracking, folder, echo)
    buffer.load()
    buffer.add("terminate", PARENT, status=status)
    if buffer.pending > 1:
        echo(f"tracking: writing {buffer.pending} kept writes to {redact(tracking.tracking_uri)}")
    if buffer.drain(wait_s):
        return 0
    echo(
        f"tracking: MLflow at {redact(tracking.tracking_uri)} did not take {buffer.pending} writes within "
        f"{wait_s:.0f} s; they are kept in {buffer.pending_file}. Run `sweeper resume {folder.name} --storage "
        f"{folder.parent}` when the server is back to write them."
    )
    return buffer.pending


def error_reason(trial: Trial) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    try:
        text = trial.get_error() or ""
    except (OSError, MlflowException):
        text = ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[-1] if lines else "trial failed without an error message")[:5000]
