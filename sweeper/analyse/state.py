"""A sweep's trials as Ray Tune stored them, read from its plain JSON files alone.

Works while the sweep runs and after it ended, with no Ray running and
without importing Ray Tune: Tune keeps its experiment state as JSON
(`experiment_state-*.json`: each trial's config, status, last result and error
file) in the experiment folder, the sweep folder or its object-store URI.
That state also holds cloudpickled fields; they are left as the hex strings
they are and never decoded, so an edited state file cannot run code here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pyarrow.fs

from sweeper import object_store
from sweeper.console import TrialRow, last_line
from sweeper.errors import EnvironmentProblem
from trainables.trial import TrialSpec

STATE_GLOB = "experiment_state-"
MAX_STATE_BYTES = 256 << 20  # a sweep of many thousand trials stays far below
MAX_ERROR_BYTES = 1 << 20


@dataclass(frozen=True)
class _File:
    filesystem: pyarrow.fs.FileSystem
    path: str

    def read(self, limit: int) -> str:
        info = self.filesystem.get_file_info(self.path)
        if info.type != pyarrow.fs.FileType.File:
            raise FileNotFoundError(self.path)
        if info.size > limit:
            raise ValueError(f"{self.path} is {info.size} bytes, more than the {limit} a sweep's state may be")
        with self.filesystem.open_input_stream(self.path) as stream:
            return stream.read().decode("utf-8")


def _latest_state(experiment: str) -> _File | None:
    filesystem, root = object_store.resolve(experiment)
    selector = pyarrow.fs.FileSelector(root, allow_not_found=True)
    names = sorted(
        info.path
        for info in filesystem.get_file_info(selector)
        if info.type == pyarrow.fs.FileType.File and PurePosixPath(info.path).name.startswith(STATE_GLOB)
    )
    return _File(filesystem, names[-1]) if names else None


def read_trials(experiment: str) -> list[TrialRow]:
    """The trials of Tune's experiment at `experiment` (the sweep folder or its object-store URI)."""
    state = _latest_state(experiment)
    if state is None:
        return []  # the sweep started but Tune has not written its state yet
    try:
        entries = json.loads(state.read(MAX_STATE_BYTES))["trial_data"]
        rows = [_row(state, *(json.loads(part) for part in entry)) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise EnvironmentProblem(f"{state.path}: not a Ray Tune experiment state this version can read ({exc})") from None
    return sorted(rows, key=TrialRow.sort_key)


def _row(state: _File, trial: dict[str, Any], runtime: dict[str, Any]) -> TrialRow:
    error = None
    if trial["status"] == "ERROR":
        error = _error_line(state, str(trial.get("relative_logdir", "")), runtime.get("error_filename"))
    return TrialRow(
        trial_id=str(trial["trial_id"]),
        status=str(trial["status"]),
        spec=TrialSpec.from_config(trial["config"]),
        last_result=dict(runtime.get("last_result") or {}),
        error=error,
    )


def _error_line(state: _File, logdir: str, filename: Any) -> str:
    """The last line of the trial's error file: the exception and its message."""
    if not isinstance(filename, str) or PurePosixPath(filename).name != filename or "/" in logdir or ".." in logdir:
        return "trial failed (its error file is not named in the state)"
    path = str(PurePosixPath(state.path).parent / logdir / filename)
    try:
        text = _File(state.filesystem, path).read(MAX_ERROR_BYTES)
    except (OSError, ValueError):
        return "trial failed (its error file cannot be read)"
    return last_line(text)
