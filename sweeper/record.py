"""A sweep's record on disk: `sweep.json` and the resolved `config.yaml` in the sweep folder.

The run stage writes the record once the tracking store holds the parent run;
every later command (`status`, `resume`, `select`, `report`, `export`) finds
the sweep through it. The folder is untrusted input: a record that is not the
JSON this module writes is a clear error, never a traceback.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sweeper.errors import EnvironmentProblem

SWEEP_RECORD = "sweep.json"
RESOLVED_CONFIG = "config.yaml"
OPTUNA_JOURNAL = "optuna.journal"  # the study of an Optuna sweep, JSON lines that outlive the driver
RUNG_RECORDS = "rungs.json"  # ASHA's or the Pareto scheduler's rung records, kept with Tune's state (sweeper.run.rungs)
MAX_RECORD_BYTES = 16 << 20  # the state digests grow with the trials: a few hundred bytes each
DIGEST_SCHEMES = ("sha256", "hmac-sha256")


@dataclass(frozen=True)
class SweepRecord:
    """What a later command needs to find the sweep again."""

    sweep_id: str
    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage: str
    created: float
    checkpoints: str | None = None  # the object-store URI holding Tune's side of the sweep, if not the folder
    # Digests of the files Tune unpickles on resume, by name in the experiment folder, newest first;
    # written by the driver as Tune writes them (sweeper.run.pickles), checked by `resume`.
    state_digests: dict[str, list[str]] | None = None
    state_digest_scheme: str | None = None  # one of DIGEST_SCHEMES

    def write(self, folder: Path) -> None:
        write_atomically(folder / SWEEP_RECORD, json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, folder: Path) -> SweepRecord:
        path = folder / SWEEP_RECORD
        try:
            if path.stat().st_size > MAX_RECORD_BYTES:
                raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes")
            values = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
            known = {f.name: f for f in fields(cls)}
            unknown = sorted(set(values) - set(known))
            missing = sorted(f.name for f in known.values() if f.name not in values and f.default is not None)
            if unknown or missing:
                raise ValueError(f"unknown keys {unknown}" if unknown else f"missing keys {missing}")
            record = cls(**values)
            for name in ("sweep_id", "name", "tracking_uri", "experiment_id", "parent_run_id", "storage"):
                if not isinstance(getattr(record, name), str):
                    raise ValueError(f"{name} is not a string")
            if not isinstance(record.created, (int, float)) or not isinstance(record.checkpoints, (str, type(None))):
                raise ValueError("created is not a number, or checkpoints not a string")
            _check_digests(record)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise EnvironmentProblem(f"{path}: not a sweep record written by sweeper ({exc})") from None
        return record

    @property
    def folder(self) -> Path:
        return Path(self.storage) / self.sweep_id

    @property
    def experiment_path(self) -> str:
        """Where Ray Tune keeps the sweep's checkpoints and experiment state: the sweep folder itself,
        or its namesake under the object-store URI in `checkpoints`."""
        if self.checkpoints:
            return f"{self.checkpoints}/{self.sweep_id}"
        return str(self.folder)


def _check_digests(record: SweepRecord) -> None:
    digests, scheme = record.state_digests, record.state_digest_scheme
    if scheme is not None and scheme not in DIGEST_SCHEMES:
        raise ValueError(f"state_digest_scheme {scheme!r} is not one of {DIGEST_SCHEMES}")
    if digests is None:
        return
    if not isinstance(digests, dict) or not all(
        isinstance(name, str) and isinstance(kept, list) and all(isinstance(d, str) for d in kept)
        for name, kept in digests.items()
    ):
        raise ValueError("state_digests is not an object of file names to lists of digests")


def write_atomically(path: Path, text: str) -> None:
    """A reader (or a resume after a crash) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def find_sweep(sweep: str, storage: Path) -> Path:
    """A sweep folder given its id (under `storage`) or its path."""
    for candidate in (Path(sweep), storage / sweep):
        if (candidate / SWEEP_RECORD).is_file():
            return candidate.resolve()
    known = sorted(p.parent.name for p in storage.glob(f"*/{SWEEP_RECORD}")) if storage.is_dir() else []
    hint = f"; sweeps in {storage}: {', '.join(known[-5:])}" if known else f"; {storage} holds no sweeps"
    raise EnvironmentProblem(f"no sweep {sweep!r}{hint}")
