"""What Optuna is told about a configuration repeated over seeds."""

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from sweeper.run.space import SeedRepeater

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
