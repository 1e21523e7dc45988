"""Successive halving on several objectives: packs stop early on their seeds' means when others dominate them.

ASHA keeps the best 1/η of the trials at each rung by one metric. Here the
order at a rung is non-dominated sorting of the packs that reached it (front 0:
no pack dominates it; front 1: only packs of front 0 do; ...), so a search that
charts a trade-off stops what is worse on every objective, not what is worse on
one. The rule, decided once per pack and rung when the pack reaches the rung
(asynchronously, as ASHA does): among the n packs recorded there so far, the
pack goes on when fewer than ceil(n / η) of them lie in fronts before its own.
A front is kept or stopped whole, since its packs are incomparable; a pack no
other pack dominates is never stopped. With one objective the fronts are the
distinct values in order, which is ASHA's rule up to ties.

The rule (`fronts`, `keeps`) is pure; `ParetoHalving` is the Ray Tune scheduler
around it. The values it reads are a pack's plain result keys, which
`trainables.report` makes the means over the pack's seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

Point = tuple[float, ...]


def dominates(a: Point, b: Point, modes: Sequence[str]) -> bool:
    """`a` is at least as good as `b` on every objective and better on one (NaN is worse than anything)."""
    better = False
    for x, y, mode in zip(a, b, modes):
        x, y = (x, y) if mode == "min" else (-x, -y)
        x, y = (math.inf if math.isnan(x) else x), (math.inf if math.isnan(y) else y)
        if x > y:
            return False
        better = better or x < y
    return better


def fronts(points: Mapping[str, Point], modes: Sequence[str]) -> list[list[str]]:
    """Non-dominated sorting: the keys of `points` in fronts, the non-dominated first."""
    left, out = dict(points), []
    while left:
        front = [k for k, p in left.items() if not any(dominates(q, p, modes) for q in left.values())]
        out.append(front)
        for key in front:
            del left[key]
    return out


def keeps(points: Mapping[str, Point], modes: Sequence[str], eta: int) -> set[str]:
    """The packs at a rung that go on: those whose front starts within the best ceil(n / eta)."""
    quota, before, kept = math.ceil(len(points) / eta), 0, set()
    for front in fronts(points, modes):
        if before >= quota:
            break
        kept.update(front)
        before += len(front)
    return kept


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The steps where packs are compared, as ASHA's: grace_period * eta^k below max_t."""
    out, t = [], grace_period
    while t < max_t:
        out.append(t)
        t *= reduction_factor
    return out


class ParetoHalving(FIFOScheduler):
    """Ray Tune scheduler: at each rung, stop a pack that `keeps` leaves out; `stopped` says at which rung."""

    _supports_buffered_results = False  # a rung is decided on the result that reaches it, as ASHA does

    def __init__(
        self, metrics: Sequence[str], modes: Sequence[str], max_t: int, grace_period: int, reduction_factor: int,
        time_attr: str = "step",
    ) -> None:  # fmt: skip
        super().__init__()
        self.metrics, self.modes, self.eta, self.time_attr = list(metrics), list(modes), reduction_factor, time_attr
        self.rungs = rungs(grace_period, reduction_factor, max_t)
        self.recorded: dict[int, dict[str, Point]] = {rung: {} for rung in self.rungs}
        self.stopped: dict[str, int] = {}  # trial id -> the rung (a step) it was stopped at

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        t = result.get(self.time_attr)
        if t is None or any(m not in result for m in self.metrics):
            return TrialScheduler.CONTINUE  # e.g. a report between evaluations, without the scores
        point = tuple(float(result[m]) for m in self.metrics)
        for rung in self.rungs:
            at_rung = self.recorded[rung]
            if t < rung or trial.trial_id in at_rung:
                continue
            at_rung[trial.trial_id] = point
            if trial.trial_id not in keeps(at_rung, self.modes, self.eta):
                self.stopped[trial.trial_id] = rung
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"ParetoHalving: rungs {self.rungs}, {len(self.stopped)} packs stopped"
