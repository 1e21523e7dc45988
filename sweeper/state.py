"""A sweep's stored state: its record and its trials, read from the sweep folder alone.

Works while the sweep runs and after it ended, with no Ray running, because
Tune keeps its experiment state and each trial's results in the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.errors import EnvironmentProblem
from sweeper.launch import SWEEP_RECORD, SweepRecord
from trainables.trial import TrialSpec


@dataclass(frozen=True)
class TrialState:
    trial_id: str
    status: str
    beta: float
    capacity: float
    seed: int
    last_result: dict[str, Any]
    error: str | None


def find_sweep(sweep: str, storage: Path) -> Path:
    """A sweep folder given its id (under `storage`) or its path."""
    for candidate in (Path(sweep), storage / sweep):
        if (candidate / SWEEP_RECORD).is_file():
            return candidate.resolve()
    known = sorted(p.parent.name for p in storage.glob(f"*/{SWEEP_RECORD}")) if storage.is_dir() else []
    hint = f"; sweeps in {storage}: {', '.join(known[-5:])}" if known else f"; {storage} holds no sweeps"
    raise EnvironmentProblem(f"no sweep {sweep!r}{hint}")


def read_trials(experiment: str) -> list[TrialState]:
    """The trials of Tune's experiment at `experiment`: the sweep folder or its object-store URI."""
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(experiment)
    except (ValueError, FileNotFoundError):
        return []  # the sweep started but Tune has not written its state yet
    states = []
    for trial in analysis.trials:
        config = trial.config
        error = None
        if trial.status == "ERROR":
            from sweeper.tracking import error_reason

            error = error_reason(trial)
        states.append(
            TrialState(
                trial_id=trial.trial_id,
                status=trial.status,
                beta=float(config["beta"]),
                capacity=float(config["capacity"]),
                seed=TrialSpec.from_config(config).seed,
                last_result=dict(trial.last_result or {}),
                error=error,
            )
        )
    return sorted(states, key=lambda t: (t.beta, t.capacity, t.seed))


def read_record(folder: Path) -> SweepRecord:
    return SweepRecord.read(folder)
