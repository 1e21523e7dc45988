"""The Optuna study of a sweep, read from its journal in the sweep folder: the trials' states and the front.

The journal (`optuna.journal`) is a file of JSON lines; Optuna's
`JournalFileBackend` reads it with `json.loads` and unpickles nothing (only a
snapshotting backend, such as Redis's, holds pickles). So `sweeper status`
and `sweeper select` may read the study of a sweep folder they did not write.

A study's params name the objective (`objective`, when the search chooses
among several) and its weights (`weights/<name>`); studies of earlier
releases name `beta` and `capacity` (C_max). A value the search held fixed is
no param at all.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from typing import Any

from sweeper.record import OPTUNA_JOURNAL
from trainables.trial import Configuration

OBJECTIVE_PARAM = "objective"
WEIGHT_PARAM_PREFIX = "weights/"
LEGACY_PARAMS = ("beta", "capacity")  # the studies of earlier releases: beta and C_max


@dataclass(frozen=True)
class FrontTrial:
    """A trial of the study's Pareto front (the best trial, with one objective)."""

    number: int
    params: dict[str, Any]  # the objective's kind (a string) and weights (numbers)
    values: tuple[float, ...]

    def names(self, configuration: Configuration) -> bool:
        """Whether its params are those of the configuration (on every param it has)."""
        for name, value in self.params.items():
            if name == OBJECTIVE_PARAM:
                same = value == configuration.objective
            elif name.startswith(WEIGHT_PARAM_PREFIX):
                same = _close(configuration.weight(name.removeprefix(WEIGHT_PARAM_PREFIX)), value)
            elif name in LEGACY_PARAMS:
                same = _close(_legacy_values(configuration).get(name), value)
            else:
                continue
            if not same:
                return False
        return True


def _close(ours: float | None, theirs: Any) -> bool:
    return ours is not None and math.isclose(ours, float(theirs), rel_tol=1e-9, abs_tol=1e-12)


def _legacy_values(configuration: Configuration) -> dict[str, float]:
    """The configuration as the beta and capacity of earlier releases (`Configuration.from_beta_and_capacity`
    read backwards); none for the objectives those did not train."""
    if configuration.objective == "beta_vae":
        return {"beta": configuration.weight("beta"), "capacity": 0.0}
    if configuration.objective == "annealed_vae":
        return {"beta": configuration.weight("gamma"), "capacity": configuration.weight("c_max")}
    return {}


@dataclass(frozen=True)
class Study:
    states: dict[str, int]  # trials per Optuna state: COMPLETE, PRUNED, FAIL, RUNNING
    front: list[FrontTrial]

    def on_front(self, configuration: Configuration) -> bool:
        """Whether the configuration is one of the front's."""
        return any(t.names(configuration) for t in self.front)


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
