"""What Optuna and ASHA are told about a configuration repeated over seeds, or packed."""

from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from sweeper.run.space import SeedRepeater
from trainables.pack_report import PackReport

SEEDS = 3


@pytest.fixture
def study_and_repeater():
    storage = optuna.storages.InMemoryStorage()
    search = OptunaSearch(
        space={"beta": optuna.distributions.FloatDistribution(1.0, 100.0, log=True)},
        metric="score",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        storage=storage,
        study_name="sweep",
    )
    repeater = SeedRepeater(search, repeat=SEEDS)
    return optuna.load_study(study_name="sweep", storage=storage), repeater


def run_configuration(repeater: SeedRepeater, prefix: str, outcomes: list[float | None]) -> None:
    """Suggest one configuration's seeds, then complete them: a float is a score, None an error."""
    ids = [f"{prefix}{i}" for i in range(SEEDS)]
    configs = [repeater.suggest(trial_id) for trial_id in ids]
    assert [c["__trial_index__"] for c in configs] == list(range(SEEDS))
    assert len({c["beta"] for c in configs}) == 1  # the seeds share one configuration
    for trial_id, outcome in zip(ids, outcomes, strict=True):
        if outcome is None:
            repeater.on_trial_complete(trial_id, result=None, error=True)
        else:
            repeater.on_trial_complete(trial_id, result={"score": outcome})


def test_the_seeds_mean_is_told_when_every_seed_finished(study_and_repeater):
    study, repeater = study_and_repeater
    run_configuration(repeater, "a", [0.2, 0.4, 0.9])
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    assert trial.value == pytest.approx(0.5)


def test_one_failed_seed_fails_the_configuration_instead_of_averaging_the_others(study_and_repeater):
    study, repeater = study_and_repeater
    run_configuration(repeater, "a", [0.9, None, 0.8])
    run_configuration(repeater, "b", [0.1, 0.2, 0.3])
    first, second = study.trials
    assert first.state == TrialState.FAIL and first.value is None
    assert second.state == TrialState.COMPLETE and second.value == pytest.approx(0.2)
    assert study.best_trial.number == second.number


def test_two_objectives_get_the_seeds_mean_of_each():
    storage = optuna.storages.InMemoryStorage()
    search = OptunaSearch(
        space={"beta": optuna.distributions.FloatDistribution(1.0, 100.0, log=True)},
        metric=["recon", "disent/mig"], mode=["min", "max"], sampler=optuna.samplers.NSGAIISampler(seed=0),
        storage=storage, study_name="sweep",
    )  # fmt: skip
    repeater = SeedRepeater(search, repeat=SEEDS)
    for i, (recon, mig) in enumerate([(1.0, 0.1), (2.0, 0.2), (6.0, 0.6)]):
        repeater.suggest(f"a{i}")
        repeater.on_trial_complete(f"a{i}", result={"recon": recon, "disent/mig": mig})
    (trial,) = optuna.load_study(study_name="sweep", storage=storage).trials
    assert trial.state == TrialState.COMPLETE
    assert trial.values == pytest.approx([3.0, 0.3])


@dataclass(frozen=True)
class StubTrial:
    trial_id: str


def test_asha_stops_packs_on_their_seed_mean_not_on_a_seed():
    asha = ASHAScheduler(time_attr="step", metric="loss", mode="min", max_t=40, grace_period=10, reduction_factor=2)
    packs = {"a": [4.0, 4.0, 4.0], "b": [3.0, 3.0, 3.0], "c": [2.0, 2.0, 9.0]}  # c: the best seed, the worst mean
    decisions = {}
    for trial_id, losses in packs.items():
        trial = StubTrial(trial_id)
        asha.on_trial_add(None, trial)
        report = PackReport({seed: {"loss": loss} for seed, loss in enumerate(losses)}, {}, images_per_sec=1.0)
        decisions[trial_id] = asha.on_trial_result(None, trial, {**report.tune_metrics(), "step": 10})
    # At the rung c's mean (4.33) is below the median of a and b (3.5), though its first seeds beat both.
    assert decisions == {"a": TrialScheduler.CONTINUE, "b": TrialScheduler.CONTINUE, "c": TrialScheduler.STOP}
