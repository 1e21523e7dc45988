"""The Pareto scheduler: non-dominated sorting, the keep rule at a rung, and what Optuna is told of a stopped pack.

No Ray runs here: the scheduler and the searcher get results as Tune's
controller hands them over (a stopped trial's last result goes to the
searcher's on_trial_complete, as `TuneController._process_trial_result` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from sweeper.run.pareto import ParetoHalving, dominates, fronts, keeps, rungs
from sweeper.run.space import PackSearcher
from trainables.report import TrialReport

MIN_MAX = ["min", "max"]


@dataclass(frozen=True)
class StubTrial:
    trial_id: str


def test_domination_follows_each_objectives_direction():
    assert dominates((1.0, 0.5), (2.0, 0.4), MIN_MAX)
    assert dominates((1.0, 0.5), (1.0, 0.4), MIN_MAX)  # equal on one, better on the other
    assert not dominates((1.0, 0.5), (1.0, 0.5), MIN_MAX)  # equal points dominate neither way
    assert not dominates((1.0, 0.3), (2.0, 0.4), MIN_MAX)  # a trade-off
    assert dominates((1.0, 0.5), (1.0, math.nan), MIN_MAX)  # NaN is worse than anything


def test_fronts_sort_the_packs_by_domination():
    points = {"a": (1.0, 0.9), "b": (2.0, 1.0), "c": (2.0, 0.5), "d": (3.0, 0.4), "e": (3.0, 0.95)}
    assert fronts(points, MIN_MAX) == [["a", "b"], ["c", "e"], ["d"]]


@pytest.mark.parametrize(
    ("eta", "kept"),
    [
        (2, {"a", "b", "c", "e"}),  # quota 3: front 0 (2 packs) and front 1, which starts within it
        (3, {"a", "b"}),  # quota 2: exactly the non-dominated front
        (5, {"a", "b"}),  # quota 1: a front is kept whole, never cut by an arbitrary tie-break
    ],
)
def test_a_pack_goes_on_when_its_front_starts_within_the_best_share(eta, kept):
    points = {"a": (1.0, 0.9), "b": (2.0, 1.0), "c": (2.0, 0.5), "d": (3.0, 0.4), "e": (3.0, 0.95)}
    assert keeps(points, MIN_MAX, eta) == kept


def test_with_one_objective_the_best_share_goes_on_as_with_asha():
    points = {f"p{i}": (float(i),) for i in range(8)}
    assert keeps(points, ["min"], 4) == {"p0", "p1"}
    assert keeps(points, ["max"], 4) == {"p6", "p7"}


def test_rungs_are_ashas_milestones_below_the_last_step():
    assert rungs(grace_period=10, reduction_factor=2, max_t=80) == [10, 20, 40]
    assert rungs(grace_period=50, reduction_factor=4, max_t=50) == []


def pack_result(step: int, recon: list[float], mig: list[float]) -> dict:
    """A pack's result as `trainables.report` makes it: per model, and the seed means as plain keys."""
    models = {seed: {"recon": r, "disent/mig": m} for seed, (r, m) in enumerate(zip(recon, mig, strict=True))}
    return {**TrialReport(models, {}, images_per_sec=1.0).tune_metrics(), "step": step}


def scheduler() -> ParetoHalving:
    return ParetoHalving(["recon", "disent/mig"], MIN_MAX, max_t=40, grace_period=10, reduction_factor=2)


def test_the_scheduler_stops_a_pack_dominated_at_a_rung_on_its_seed_means():
    halving = scheduler()
    assert halving.rungs == [10, 20]

    def decide(trial: str, result: dict) -> str:
        return halving.on_trial_result(None, StubTrial(trial), result)

    assert decide("a", pack_result(10, [1.0, 3.0], [0.5, 0.5])) == TrialScheduler.CONTINUE  # first at the rung
    # b's first seed beats a on both objectives, but its seed means are dominated by a's (2.0, 0.5).
    assert decide("b", pack_result(10, [0.5, 4.5], [0.6, 0.3])) == TrialScheduler.STOP
    assert decide("c", pack_result(10, [3.0, 3.0], [0.9, 0.9])) == TrialScheduler.CONTINUE  # a trade-off with a
    assert halving.stopped == {"b": 10}
    # A report between evaluations carries no scores: nothing is decided on it.
    assert decide("c", {"step": 15, "recon": 9.0}) == TrialScheduler.CONTINUE
    # At rung 20 only the packs that reached it count: c alone goes on, then a is dominated by c.
    assert decide("c", pack_result(20, [1.0, 1.0], [0.9, 0.9])) == TrialScheduler.CONTINUE
    assert decide("a", pack_result(20, [1.5, 1.5], [0.5, 0.5])) == TrialScheduler.STOP
    assert halving.stopped == {"b": 10, "a": 20}
    assert decide("c", pack_result(40, [0.9, 0.9], [0.9, 0.9])) == TrialScheduler.CONTINUE  # no rung at max_t


def test_stopped_packs_are_pruned_in_the_study_and_the_others_complete_with_both_seed_means():
    storage = optuna.storages.InMemoryStorage()
    search = OptunaSearch(
        space={"beta": optuna.distributions.FloatDistribution(1.0, 100.0, log=True)},
        metric=["recon", "disent/mig"], mode=MIN_MAX, sampler=optuna.samplers.NSGAIISampler(seed=0),
        storage=storage, study_name="sweep",
    )  # fmt: skip
    searcher, halving = PackSearcher(search, steps=40), scheduler()
    # (recon, mig) per seed at the rung, then at the end; None: the scheduler stops it at the rung.
    packs = {
        "a": ([1.0, 3.0], [0.5, 0.5]),
        "b": ([4.0, 4.0], [0.1, 0.3]),  # dominated by a at rung 10
        "c": ([3.0, 3.0], [0.9, 0.9]),
    }
    for trial_id, (recon, mig) in packs.items():
        searcher.suggest(trial_id)
        result = pack_result(10, recon, mig)
        if halving.on_trial_result(None, StubTrial(trial_id), result) == TrialScheduler.STOP:
            searcher.on_trial_complete(trial_id, result=result)  # what Tune hands over for a stopped trial
            continue
        searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result=pack_result(40, recon, mig))
    assert halving.stopped == {"b": 10}
    study = optuna.load_study(study_name="sweep", storage=storage)
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.PRUNED, 2: TrialState.COMPLETE}
    assert study.trials[0].values == pytest.approx([2.0, 0.5])
    assert study.trials[2].values == pytest.approx([3.0, 0.9])
    assert {t.number for t in study.best_trials} == {0, 2}
