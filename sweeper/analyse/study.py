"""The Optuna study of a sweep, read from its journal in the sweep folder: the trials' states and the front.

The journal (`optuna.journal`) is a file of JSON lines; Optuna's
`JournalFileBackend` reads it with `json.loads` and unpickles nothing (only a
snapshotting backend, such as Redis's, holds pickles). So `sweeper status`
and `sweeper select` may read the study of a sweep folder they did not write.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sweeper.record import OPTUNA_JOURNAL


@dataclass(frozen=True)
class FrontTrial:
    """A trial of the study's Pareto front (the best trial, with one objective)."""

    number: int
    params: dict[str, float]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Study:
    states: dict[str, int]  # trials per Optuna state: COMPLETE, PRUNED, FAIL, RUNNING
    front: list[FrontTrial]

    def on_front(self, beta: float, capacity: float) -> bool:
        """Whether the configuration is one of the front's (a fixed C_max is no Optuna parameter)."""
        return any(
            math.isclose(t.params.get("beta", beta), beta, rel_tol=1e-9)
            and math.isclose(t.params.get("capacity", capacity), capacity, rel_tol=1e-9, abs_tol=1e-12)
            for t in self.front
        )


class StudyUnreadable(Exception):
    """The journal is there but cannot be read as a study of this sweep."""


def read_study(folder: Path) -> Study | None:
    """The study of the sweep folder (named after it, as launch names it); None for a sweep without one."""
    path = folder / OPTUNA_JOURNAL
    if not path.is_file():
        return None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=folder.name, storage=JournalStorage(JournalFileBackend(str(path))))
        trials = study.trials
        front = study.best_trials if any(t.state.name == "COMPLETE" for t in trials) else []
    except (OSError, ValueError, KeyError, TypeError, optuna.exceptions.OptunaError) as exc:
        raise StudyUnreadable(f"{path}: {exc}") from None
    return Study(
        states=dict(Counter(t.state.name for t in trials)),
        front=[FrontTrial(t.number, dict(t.params), tuple(t.values)) for t in sorted(front, key=lambda t: t.number)],
    )
