"""What Optuna and ASHA are told about a configuration repeated over seeds, or packed."""

from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from sweeper.run.space import SeedRepeater
from trainables.report import TrialReport

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
        report = TrialReport({seed: {"loss": loss} for seed, loss in enumerate(losses)}, {}, images_per_sec=1.0)
        decisions[trial_id] = asha.on_trial_result(None, trial, {**report.tune_metrics(), "step": 10})
    # At the rung c's mean (4.33) is below the median of a and b (3.5), though its first seeds beat both.
    assert decisions == {"a": TrialScheduler.CONTINUE, "b": TrialScheduler.CONTINUE, "c": TrialScheduler.STOP}


def _search_config(sampler: str, scheduler: str, metrics: list[str], pack_seeds: bool):
    from sweeper.config import validate_config

    one = len(metrics) == 1
    search = {
        "kind": "optuna", "beta": {"low": 1.0, "high": 16.0, "log": True}, "capacity": [0.0], "num_samples": 4,
        "seeds": 2, "pack_seeds": pack_seeds, "sampler": sampler, "scheduler": scheduler,
        "metric": metrics[0] if one else metrics, "mode": "min" if one else ["min"] * len(metrics),
    }  # fmt: skip
    raw = {"name": "pickle", "search": search, "eval": {"metrics": ["mig"]}}
    return validate_config(raw, "test")


SEARCHES = [
    (sampler, scheduler, metrics, pack)
    for sampler in ("tpe", "gp", "random", "nsga2")
    for metrics in (["recon"], ["recon", "disent/mig"])
    for pack in (False, True)
    for scheduler in ("fifo", "asha", "pareto")
    if not (scheduler == "asha" and (len(metrics) > 1 or not pack))  # refused by the config
    and not (scheduler == "pareto" and not pack)
]


@pytest.mark.parametrize(("sampler", "scheduler", "metrics", "pack"), SEARCHES)
def test_every_searcher_and_scheduler_survives_tunes_pickling(tmp_path, sampler, scheduler, metrics, pack):
    """As Tune saves them: the Tuner's state through ray.cloudpickle, the searcher's checkpoint by `save`."""
    from ray import cloudpickle

    from sweeper.run import space

    config = _search_config(sampler, scheduler, metrics, pack)
    for built in (space.searcher(config, tmp_path, "sweep"), space.scheduler(config)):
        assert type(cloudpickle.loads(cloudpickle.dumps(built))) is type(built)
    search = space.searcher(config, tmp_path, "sweep")
    search.set_search_properties(None, None, {"beta": space.param_space(config)["beta"]})  # as Tune does
    assert 1.0 <= search.suggest("t0")["beta"] <= 16.0  # the study exists and has sampled once
    search.save(str(tmp_path / "searcher.pkl"))
    restored = space.searcher(config, tmp_path, "sweep")
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert 1.0 <= restored.suggest("t1")["beta"] <= 16.0
    space.check_search(config)


class LockedSampler(optuna.samplers.RandomSampler):
    """A sampler as a future Optuna might make it: holding something no pickle takes."""

    def __init__(self) -> None:
        import threading

        super().__init__(seed=0)
        self._lock = threading.Lock()


def test_a_searcher_that_cannot_be_saved_is_an_environment_problem_naming_the_versions(monkeypatch):
    from sweeper.errors import EnvironmentProblem
    from sweeper.run import space

    monkeypatch.setattr(space, "sampler", lambda name, seed=0: LockedSampler())
    with pytest.raises(EnvironmentProblem, match=rf"cannot be saved .* optuna {optuna.__version__}, ray ") as error:
        space.check_search(_search_config("random", "fifo", ["recon"], pack_seeds=True))
    assert error.value.exit_code == 3


# -- the plan `launch --dry-run` and `validate` print ------------------------------------------
def _plan(search: dict, seeds: int = 1) -> list[str]:
    from sweeper.config import validate_config
    from sweeper.run.space import describe_plan

    return describe_plan(validate_config({"name": "plan", "search": {**search, "seeds": seeds}}, "test"))


def test_a_small_grid_lists_every_configuration_and_its_seeds():
    assert _plan({"beta": [1.0, 4.0], "capacity": [0.0, 5.0]}, seeds=3) == [
        "beta=1  C_max=0  seeds=[0, 1, 2]",
        "beta=1  C_max=5  seeds=[0, 1, 2]",
        "beta=4  C_max=0  seeds=[0, 1, 2]",
        "beta=4  C_max=5  seeds=[0, 1, 2]",
    ]


def test_a_large_grid_and_many_seeds_are_summarised_in_one_line():
    # 20 betas x 1000 seeds printed every seed list in full: 20 lines of 1000 numbers each.
    lines = _plan({"beta": [float(b) for b in range(1, 21)], "pack_seeds": True}, seeds=1000)
    assert lines == [
        "grid of 20 configurations: beta in [1, 2, 3, ..., 20] (20 values) x C_max in [0], "
        "each over seeds=0..999 (1000) (one packed trial each)"
    ]


def test_an_optuna_plan_summarises_a_long_categorical_list_and_many_seeds():
    search = {"kind": "optuna", "num_samples": 5, "beta": [float(b) for b in range(1, 101)],
              "capacity": {"low": 0.0, "high": 50.0}}  # fmt: skip
    assert _plan(search, seeds=40)[:2] == [
        "optuna (tpe): 5 configurations of beta in [1, 2, 3, ..., 100] (100 values), C_max in 0 to 50",
        "each repeated over seeds=0..39 (40); optimising the seeds' mean loss (min)",
    ]
