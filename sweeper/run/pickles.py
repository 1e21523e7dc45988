"""Tune's pickled state in a sweep folder: digests recorded by the driver, checked before `resume`.

`Tuner.restore` unpickles `tuner.pkl` (with the searcher, the scheduler and the
callbacks in it), the searcher state (`searcher-state-*.pkl`) and the callback
state, decodes the cloudpickled fields of `experiment_state-*.json` and
`basic-variant-state-*.json`, and the result grid unpickles each failed
trial's `error.pkl`. Whoever can change one of those files can run code in
the next `sweeper resume`. So the driver keeps a digest of every such file in
sweep.json, updated each time Tune writes them, and `resume` refuses a sweep
folder holding one that the driver did not write, before anything is
unpickled.

The digests are HMAC-SHA256 keyed with $SWEEPER_STATE_KEY when it is set, else
plain SHA-256. Unkeyed digests only catch a change by someone who cannot also
rewrite sweep.json (a writer of the bucket holding the state, a damaged file);
keyed ones catch a change by anyone who does not know the key.

When Tune writes: `tuner.pkl` once, when the Tuner is made (recorded in
`setup`, before the first trial); the rest into the driver's staging folder
at each experiment-state save, from which a background sync copies them to
the sweep folder or its object-store URI. Every save asks each callback for
its state right after writing the experiment and searcher state and before
starting that sync, so the digests are in sweep.json before the files reach
the sweep folder. A driver killed during a sync leaves an older copy there:
the last few digests of each file are kept, and any of them is accepted.

A resumed Tune first copies every top-level JSON file of the experiment
folder into its staging folder, and when that folder is the sweep folder,
sweep.json is among them. Each sync would then copy that stale record back
over the one the driver keeps, losing every digest recorded since the resume
(and a sync cut short would leave half a record): so the copy is removed
from the staging folder before each save's sync.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs
from ray import tune

from sweeper import object_store
from sweeper.errors import EnvironmentProblem
from sweeper.record import SWEEP_RECORD, SweepRecord

STATE_KEY_ENV = "SWEEPER_STATE_KEY"
KEYED, UNKEYED = "hmac-sha256", "sha256"
KEPT_DIGESTS = 4  # per file: the copy in the sweep folder may be a few saves behind the staging folder
TUNER_FILE = "tuner.pkl"
_CHUNK = 1 << 20
_TIMESTAMPED = re.compile(r"^(?P<kind>.+?)-[0-9][0-9_-]*\.(json|pkl)$")  # state files Tune names by session


def state_key() -> bytes | None:
    key = os.environ.get(STATE_KEY_ENV, "")
    return key.encode("utf-8") if key else None


def covered(name: str) -> bool:
    """Whether Tune unpickles or decodes the file at `name` (relative to the experiment folder) on resume:
    any `.pkl`, and the JSON state files at the top (the sweeper's own sweep.json aside; the rung records,
    which `sweeper.run.rungs` writes with Tune's state and reads back, among them)."""
    path = PurePosixPath(name)
    if path.suffix == ".pkl":
        return True
    return len(path.parts) == 1 and path.suffix == ".json" and path.name != SWEEP_RECORD


def digest(name: str, chunks: Iterator[bytes], key: bytes | None) -> str:
    """SHA-256 of the content, or HMAC-SHA256 over the name and the content with `key`."""
    if key is None:
        h = hashlib.sha256()
    else:
        h = hmac.new(key, name.encode("utf-8") + b"\0", hashlib.sha256)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def _chunks(filesystem: pyarrow.fs.FileSystem, path: str) -> Iterator[bytes]:
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(_CHUNK):
            yield chunk


def _local_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _covered_files(experiment: str) -> Iterator[tuple[str, pyarrow.fs.FileSystem, str]]:
    """(name relative to the experiment folder, filesystem, path) of every covered file under `experiment`."""
    filesystem, root = object_store.resolve(experiment)
    root = root.rstrip("/")
    selector = pyarrow.fs.FileSelector(root, allow_not_found=True, recursive=True)
    for info in filesystem.get_file_info(selector):
        name = info.path[len(root) + 1 :]
        if info.type != pyarrow.fs.FileType.Directory and covered(name):
            yield name, filesystem, info.path


def check_state(record: SweepRecord) -> None:
    """Refuse (EnvironmentProblem, exit 3) a sweep whose pickled Tune state the driver did not write.

    Reads the files only to hash them; nothing is unpickled here."""
    key = state_key()
    where = f"sweep {record.sweep_id}"
    if record.state_digests is None:
        raise EnvironmentProblem(
            f"{where}: its record holds no digests of Tune's pickled state (a sweep of an older version, or one "
            "whose driver stopped before its first trial), so it cannot be resumed safely"
        )
    if record.state_digest_scheme == KEYED and key is None:
        raise EnvironmentProblem(
            f"{where}: its state was recorded with a key; set {STATE_KEY_ENV} as it was when the sweep was launched"
        )
    if record.state_digest_scheme != KEYED and key is not None:
        raise EnvironmentProblem(
            f"{where}: its state was recorded without a key, so {STATE_KEY_ENV} cannot vouch for it; unset "
            f"{STATE_KEY_ENV} to resume it only if no one else can write {record.experiment_path}"
        )
    present = list(_covered_files(record.experiment_path))
    _refuse_missing_state(record, {name for name, _, _ in present})
    for name, filesystem, path in present:
        known = record.state_digests.get(name)
        if known is None:
            raise EnvironmentProblem(
                f"{object_store.uri_of(filesystem, path)}: a pickled state file the sweep's driver did not write; "
                "refusing to resume (Tune would unpickle it)"
            )
        if digest(name, _chunks(filesystem, path), key) not in known:
            raise EnvironmentProblem(
                f"{object_store.uri_of(filesystem, path)}: changed since the sweep's driver wrote it; "
                "refusing to resume (Tune would unpickle it)"
            )


def _state_kind(name: str) -> str:
    """What a top-level state file holds, without the session's timestamp Tune puts in its name:
    `experiment_state-2026-01-01_00-00-00.json` -> `experiment_state`; `tuner.pkl` stays itself."""
    match = _TIMESTAMPED.match(name)
    return match["kind"] if match else name


def _refuse_missing_state(record: SweepRecord, present: set[str]) -> None:
    """Refuse a sweep folder from which a kind of state the driver recorded is gone.

    Tune restores what it finds: without `tuner.pkl` it fails deep inside, and without the experiment
    state it starts every trial again, finished ones included. A resumed session's newer files may be
    recorded a moment before their first copy lands in the folder, so a kind counts as present while
    any file of it is (the older state is checked like every other file).
    """
    recorded = {_state_kind(name) for name in record.state_digests or {} if "/" not in name}
    missing = sorted(recorded - {_state_kind(name) for name in present if "/" not in name})
    if missing:
        names = ", ".join(n for n in sorted(record.state_digests or {}) if _state_kind(n) in missing)
        raise EnvironmentProblem(
            f"sweep {record.sweep_id}: {record.experiment_path} no longer holds the state its driver wrote "
            f"({names}); refusing to resume (Tune would restart from what is left)"
        )


class StateDigests(tune.Callback):
    """Records the digests of Tune's pickled state in sweep.json whenever Tune writes that state.

    Tune pickles its callbacks into tuner.pkl, and a resumed sweep gets this one
    back from there: only paths are kept, and the digests are re-read from sweep.json.
    """

    def __init__(self, sweep_dir: Path, experiment: str) -> None:
        self.sweep_dir = str(sweep_dir)
        self.experiment = experiment
        self._staging: str | None = None
        self._seen: dict[str, tuple[int, int, str]] = {}  # name -> size, mtime, digest of a staged file

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_staging": None, "_seen": {}}

    def setup(self, **info: Any) -> None:
        """tuner.pkl is written once, with the Tuner, straight to the experiment folder."""
        record = SweepRecord.read(Path(self.sweep_dir))
        if TUNER_FILE in (record.state_digests or {}):
            return  # a resumed sweep: Tune does not write it again
        filesystem, root = object_store.resolve(self.experiment)
        path = f"{root.rstrip('/')}/{TUNER_FILE}"
        self._record({TUNER_FILE: digest(TUNER_FILE, _chunks(filesystem, path), state_key())})

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if trials and self._staging is None:
            self._staging = trials[0].storage.experiment_driver_staging_path

    def get_state(self) -> dict | None:
        """Called by every experiment-state save, after Tune wrote the state files and before they are
        synced to the sweep folder: the moment to record them. Returns None: this callback keeps no state
        in Tune's files."""
        if self._staging is not None:
            staging = Path(self._staging)
            (staging / SWEEP_RECORD).unlink(missing_ok=True)  # Tune's copy of a resumed sweep's record
            self._record(self._staged_digests(staging))
        return None

    def _staged_digests(self, staging: Path) -> dict[str, str]:
        key, found = state_key(), {}
        for path in staging.rglob("*"):
            name = path.relative_to(staging).as_posix()
            if not covered(name) or not path.is_file():
                continue
            stat = path.stat()
            seen = self._seen.get(name)
            if seen is None or seen[:2] != (stat.st_size, stat.st_mtime_ns):
                seen = (stat.st_size, stat.st_mtime_ns, digest(name, _local_chunks(path), key))
                self._seen[name] = seen
            found[name] = seen[2]
        return found

    def _record(self, found: dict[str, str]) -> None:
        """Add the digests to sweep.json (the newest first, a few kept per file); written only on a change."""
        record = SweepRecord.read(Path(self.sweep_dir))
        digests = dict(record.state_digests or {})
        changed = False
        for name, value in found.items():
            kept = digests.get(name, [])
            if not kept or kept[0] != value:
                digests[name] = [value, *kept][:KEPT_DIGESTS]
                changed = True
        scheme = KEYED if state_key() is not None else UNKEYED
        if changed or record.state_digest_scheme != scheme:
            replace(record, state_digests=digests, state_digest_scheme=scheme).write(Path(self.sweep_dir))
