"""The sweep's side of MLflow: the store check, the experiment, the parent run, the child-run lookup.

Everything is logged from the driver (`sweeper.tracking.callback` feeds it
Tune's events), so trials need no MLflow access and a tracking store that
takes one writer (SQLite) works. Each model's run is found again by its Ray
trial id and seed before one is created, so a resumed
sweep never opens a second run for a model. Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweeper.config import SweepConfig, dump_config
from sweeper.errors import EnvironmentProblem
from sweeper.tags import (
    CONFIG_ARTIFACT,
    EXPERIMENT_KIND_TAG,
    NOTE_TAG,
    ROLE_SWEEP,
    ROLE_TAG,
    SEED_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    VERSION_PARAM_PREFIX,
)
from sweeper.tracking.buffer import (
    PARENT,
    TrackingBuffer,
    fail_fast_http,
    redact,
    short_reason,
)

VERSIONED_PACKAGES = ("torch", "scikit-learn", "numpy", "ray", "optuna", "mlflow")
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def connect(uri: str) -> MlflowClient:
    """A client for `uri`, or a clear error now, before anything is started."""
    try:
        with _schema_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            with fail_fast_http():
                client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
        raise EnvironmentProblem(_connect_error(uri, exc)) from exc
    return client


@contextlib.contextmanager
def _schema_lock(uri: str) -> Iterator[None]:
    """Hold `<db>.lock` while opening a local SQLite store: the first open creates MLflow's schema,
    and two processes creating it at once (two first launches in one folder) make one of them fail.
    The second waits for the first and then finds the schema made."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:"):
        yield
        return
    lock = Path(uri[len(prefix) :].split("?", 1)[0] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


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
    return {f"{VERSION_PARAM_PREFIX}{name}": importlib.metadata.version(name) for name in VERSIONED_PACKAGES}


def run_key(trial_id: str, seed: int) -> str:
    """The tracking buffer's key of a model's run: the Ray trial id and the model's seed."""
    return f"{trial_id}:{seed}"


def split_run_key(key: str) -> tuple[str, int | None]:
    """(trial id, seed); no seed in the keys of a pending file an earlier release wrote for its
    trials of one model."""
    trial_id, _, seed = key.partition(":")
    return trial_id, int(seed) if seed else None


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
                tags={SWEEP_TAG: sweep_id, ROLE_TAG: ROLE_SWEEP, NOTE_TAG: config.description},
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
            **flatten("search.objectives", {k: {n: str(v) for n, v in w.items()} for k, w in search.objectives.items()}),
            **flatten("", config.trial_settings().model_dump(mode="json")),
            **library_versions(),
        }
        self.log_params(self.parent_run_id, params)
        self.client.log_text(self.parent_run_id, dump_config(config), CONFIG_ARTIFACT)

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        items = [Param(k, v) for k, v in params.items()]
        for batch in _batches(items, 100):
            self.client.log_batch(run_id, params=batch)

    def find_trial_run(self, key: str) -> str | None:
        """A model's child run by its run key (`run_key`): a resumed sweep never opens a second one."""
        trial_id, seed = split_run_key(key)
        query = f"tags.{SWEEP_TAG} = '{self.sweep_id}' and tags.{TRIAL_TAG} = '{trial_id}'"
        if seed is not None:
            query += f" and tags.{SEED_TAG} = '{seed}'"
        found = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        return found[0].info.run_id if found else None

    def create_trial_run(self, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def reopen(self) -> None:
        """Mark the parent run as running again, for a resumed sweep."""
        self.client.update_run(self.parent_run_id, status=RunStatus.to_string(RunStatus.RUNNING))


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


