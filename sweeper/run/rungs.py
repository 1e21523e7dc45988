"""The early-stopping schedulers' rung records, saved with Tune's experiment state and restored by `resume`.

ASHA and the Pareto scheduler decide a trial (a pack) at a rung against the
trials recorded there before it. Tune does not save a scheduler: the
controller's saved state leaves it out, and `tuner.pkl`, which holds it with
the Tuner, is written once, before the first trial. Without the records a
resumed sweep would judge each trial at a rung only against those that reach
it after the resume.

`RungRecords` writes the records as JSON (`rungs.json`) into Tune's staging
folder at every save of the experiment state; Tune copies the file to the
experiment folder with that state, and `StateDigests`, the callback after it,
records its digest with the rest, so `resume` checks it like Tune's own files.
A resumed sweep reads the records back before its first result.

Not through the callback state Tune saves itself (`Callback.get_state`): Tune
pickles that (`callback-states-*.pkl`) only after asking every callback for its
state, so its digest could never be recorded before the copy reaches the sweep
folder; and nothing here needs a pickle: the records are trial ids, steps and
numbers, each checked as it is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeper import object_store
from sweeper.errors import EnvironmentProblem
from sweeper.record import RUNG_RECORDS, write_atomically
from sweeper.run.pareto import ParetoHalving

MAX_RUNG_BYTES = 64 << 20  # a few dozen bytes per trial and rung

Rungs = list[tuple[float, dict[str, Any]]]  # (step, {trial id: value}) per rung, lowest step first


def keeps_rungs(scheduler: TrialScheduler) -> bool:
    return isinstance(scheduler, (ASHAScheduler, ParetoHalving))


def _asha_rungs(scheduler: ASHAScheduler) -> Rungs:
    """ASHA's own rung dicts (not copies), from the one place this module reaches into Ray's private state.

    Ray keeps them as `_brackets[i]._rungs`, a list of (milestone, {trial id: reward}) from the highest
    milestone down, the reward being the metric, negated for mode min. constraints.txt pins the Ray
    whose structure this is; another one is refused with its version rather than misread.
    """
    import ray

    brackets = getattr(scheduler, "_brackets", None)
    rungs = getattr(brackets[0], "_rungs", None) if isinstance(brackets, list) and len(brackets) == 1 else None
    if not isinstance(rungs, list) or not all(
        isinstance(rung, tuple) and len(rung) == 2 and isinstance(rung[0], (int, float)) and isinstance(rung[1], dict)
        for rung in rungs
    ):
        raise EnvironmentProblem(
            f"ray {ray.__version__}: its ASHAScheduler does not keep one bracket of rungs as `_brackets[0]._rungs`, "
            "a list of (step, {trial id: value}), so a sweep's rung records cannot be saved for resume; "
            "install the ray version constraints.txt pins"
        )
    return sorted(rungs, key=lambda rung: rung[0])


def _rungs(scheduler: TrialScheduler) -> Rungs:
    if isinstance(scheduler, ParetoHalving):
        return [(step, scheduler.recorded[step]) for step in scheduler.rungs]
    return _asha_rungs(scheduler)


def records(scheduler: TrialScheduler) -> dict[str, Any]:
    """The scheduler's rung records as plain data: each rung's step and the values recorded there
    (ASHA's one reward, or the Pareto scheduler's point, per trial), and the trials the Pareto scheduler
    stopped with the step of the rung."""
    out: dict[str, Any] = {
        "rungs": [{"step": step, "recorded": {trial: _plain(value) for trial, value in recorded.items()}}
                  for step, recorded in _rungs(scheduler)]
    }  # fmt: skip
    if isinstance(scheduler, ParetoHalving):
        out["stopped"] = dict(scheduler.stopped)
    return out


def _plain(value: Any) -> float | list[float]:
    return [float(v) for v in value] if isinstance(value, tuple) else float(value)


def restore(scheduler: TrialScheduler, saved: Any, where: str) -> None:
    """Put the records `saved` (as `records` made them, read from `where`) back into a fresh scheduler.

    Everything is checked before the scheduler is touched: the rungs must be the scheduler's, each value
    a number (a point of one number per objective for the Pareto scheduler)."""
    pareto = isinstance(scheduler, ParetoHalving)
    expected_keys = {"rungs", "stopped"} if pareto else {"rungs"}
    if not isinstance(saved, dict) or set(saved) != expected_keys:
        raise EnvironmentProblem(f"{where}: not the rung records of a {type(scheduler).__name__} (keys {sorted(expected_keys)})")
    rungs = _rungs(scheduler)
    steps = [step for step, _ in rungs]
    saved_rungs = saved["rungs"]
    if not isinstance(saved_rungs, list) or not all(isinstance(r, dict) and set(r) == {"step", "recorded"} for r in saved_rungs):
        raise EnvironmentProblem(f"{where}: rungs is not a list of {{step, recorded}}")
    saved_steps = [r["step"] for r in saved_rungs]
    if saved_steps != steps:
        raise EnvironmentProblem(f"{where}: records of rungs at steps {saved_steps}, but the sweep's scheduler has {steps}")
    width = len(scheduler.metrics) if pareto else None
    values = [
        {trial: _value(value, width, f"{where}: rung {step}, trial {trial!r}") for trial, value in _trials(r["recorded"], where, step).items()}
        for step, r in zip(steps, saved_rungs)
    ]  # fmt: skip
    if pareto:
        stopped = saved["stopped"]
        if not isinstance(stopped, dict) or not all(isinstance(t, str) and s in steps for t, s in stopped.items()):
            raise EnvironmentProblem(f"{where}: stopped is not an object of trial ids to rung steps {steps}")
        scheduler.stopped = dict(stopped)
    for (_, recorded), restored in zip(rungs, values):
        recorded.clear()
        recorded.update(restored)


def _trials(recorded: Any, where: str, step: float) -> dict[str, Any]:
    if not isinstance(recorded, dict) or not all(isinstance(trial, str) for trial in recorded):
        raise EnvironmentProblem(f"{where}: rung {step}: recorded is not an object keyed by trial id")
    return recorded


def _value(value: Any, width: int | None, where: str) -> float | tuple[float, ...]:
    """A number, or a point of `width` numbers (NaN allowed: a diverged trial's value is NaN)."""
    if width is None and _number(value):
        return float(value)
    if width is not None and isinstance(value, list) and len(value) == width and all(map(_number, value)):
        return tuple(float(v) for v in value)
    shape = "a number" if width is None else f"a list of {width} numbers"
    raise EnvironmentProblem(f"{where}: {value!r} is not {shape}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_records(scheduler: TrialScheduler, folder: Path, written: str | None = None) -> str:
    """Write the scheduler's records into `folder`, unless they are the text `written` there before; return
    the text."""
    text = json.dumps(records(scheduler))
    if text != written:
        write_atomically(folder / RUNG_RECORDS, text)
    return text


def load_records(scheduler: TrialScheduler, experiment: str) -> None:
    """Restore the records saved in the experiment folder (a path or an object-store URI), if any: a sweep
    whose driver stopped before its first save has none, nor has one whose scheduler keeps no rungs."""
    if not keeps_rungs(scheduler):
        return
    filesystem, root = object_store.resolve(experiment)
    path = f"{root.rstrip('/')}/{RUNG_RECORDS}"
    where = object_store.uri_of(filesystem, path)
    info = filesystem.get_file_info(path)
    if info.type == pyarrow.fs.FileType.NotFound:
        return
    if info.size is None or info.size > MAX_RUNG_BYTES:
        raise EnvironmentProblem(f"{where}: larger than the {MAX_RUNG_BYTES} bytes rung records may be")
    try:
        with filesystem.open_input_stream(path) as stream:
            saved = json.loads(stream.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EnvironmentProblem(f"{where}: not the JSON rung records a sweep writes ({exc})") from None
    restore(scheduler, saved, where)


class RungRecords(tune.Callback):
    """Saves the scheduler's rung records with each save of Tune's experiment state; restores them at the
    start of a resumed sweep. Must come before `StateDigests` among the callbacks, so that the file written
    at a save is digested at that save.

    Tune pickles its callbacks into tuner.pkl together with the scheduler, and a resumed sweep gets both back
    from there, this callback still holding that same scheduler.
    """

    def __init__(self, scheduler: TrialScheduler, experiment: str) -> None:
        self.scheduler, self.experiment = scheduler, experiment
        self._staging: str | None = None
        self._written: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_staging": None, "_written": None}

    def setup(self, **info: Any) -> None:
        """Called before the first result of every start; a resumed sweep finds the records it saved."""
        load_records(self.scheduler, self.experiment)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if trials and self._staging is None:
            self._staging = trials[0].storage.experiment_driver_staging_path

    def get_state(self) -> dict | None:
        """Called by every save of the experiment state, before its files are copied to the experiment folder.
        Returns None: the records go into their own JSON file, not into Tune's pickle."""
        if self._staging is not None:
            self._written = write_records(self.scheduler, Path(self._staging), self._written)
        return None
