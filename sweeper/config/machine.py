"""What a valid config points at on this machine: the storage folder, the dataset file and the URIs
the environment gives for unset keys.

Checked only where a command starts work (`validate`, `launch`, `resume`),
never when a read-only command (`status`, `select`, `report`, `export`)
loads a sweep's resolved config: a sweep folder copied from the cluster to a
laptop has no dataset file there, and need not.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sweeper.config.messages import invalid_config, shown
from sweeper.config.schema import SweepConfig
from sweeper.errors import ConfigError
from sweeper.uris import CredentialsInURI, refuse_credentials
from trainables.settings import DataSettings

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def check_machine(config: SweepConfig, source: str) -> SweepConfig:
    """`config` with its dataset file's path made absolute (trials and later commands run elsewhere),
    or a ConfigError naming `source` and every key whose target is not usable here."""
    problems: list[str] = []
    storage = _storage_problem(Path(config.storage).expanduser())
    if storage:
        problems.append(f"storage = {shown(config.storage)}: {storage}")
    data, data_problem = _usable_data(config.data)
    if data_problem:
        problems.append(data_problem)
    # The environment's URIs stand in for unset keys, so they are printed and stored the same way.
    for variable, key in (("MLFLOW_TRACKING_URI", config.tracking.uri), ("RAY_ADDRESS", config.ray.address)):
        try:
            refuse_credentials(None if key else os.environ.get(variable), f"${variable}")
        except CredentialsInURI as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(invalid_config(source, problems))
    return config.model_copy(update={"data": data})


def effective_tracking_uri(config: SweepConfig) -> str:
    return config.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def effective_ray_address(config: SweepConfig, override: str | None = None) -> str | None:
    return override or config.ray.address or os.environ.get("RAY_ADDRESS") or None


def _storage_problem(storage: Path) -> str | None:
    """Why a sweep folder could not be made under `storage`, or None; nothing is left behind.

    A folder is made and removed in the nearest existing one: permission bits
    say nothing of a read-only mount, of /proc, or of what root may do.
    """
    storage = storage.absolute()
    existing = storage
    try:
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            reason = "is a file, not a folder"
            return reason if existing == storage else f"cannot be created: {existing} {reason}"
        Path(tempfile.mkdtemp(prefix=".sweeper-probe-", dir=existing)).rmdir()
    except OSError as exc:
        reason = f"is not writable ({exc.strerror})"
        return reason if existing == storage else f"cannot be created: {existing} {reason}"
    return None


def _usable_data(data: DataSettings) -> tuple[DataSettings, str | None]:
    """The data settings with the data path (a file, or a folder for smallnorb and cars3d) and the
    scream variant's background made absolute, and what is wrong with them as far as their headers go;
    the dataset's content is checked when the sweep reads it (sweeper.run.datasets)."""
    from trainables.data import DataError, check_settings

    for key in ("path", "background"):
        value = getattr(data, key)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.exists():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            return data, f"data.{key} = {shown(value)}: no such file{where}"
        data = data.model_copy(update={key: str(path.resolve())})
    try:
        check_settings(data)
    except DataError as exc:
        about_background = data.background is not None and str(exc).startswith(data.background)
        key = "background" if about_background else "path" if data.path is not None else "ground_truth"
        return data, f"data.{key}: {exc}"
    return data, None
