"""What Optuna and ASHA are told about a configuration repeated over seeds, or packed."""

from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from sweeper.run.space import SeedRepeater
from trainables.report import TrialReport
from trainables.trial import Configuration, TrialSpec

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
        "kind": "optuna", "objectives": {"beta_vae": {"beta": {"low": 1.0, "high": 16.0, "log": True}}}, "num_samples": 4,
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


def beta(suggested: dict) -> float:
    return TrialSpec.from_config({**suggested, "settings": {"training": {"seed_offset": 0}}}).configuration.weight("beta")


@pytest.mark.parametrize(("sampler", "scheduler", "metrics", "pack"), SEARCHES)
def test_every_searcher_and_scheduler_survives_tunes_pickling(tmp_path, sampler, scheduler, metrics, pack):
    """As Tune saves them: the Tuner's state through ray.cloudpickle, the searcher's checkpoint by `save`."""
    from ray import cloudpickle

    from sweeper.run import space

    config = _search_config(sampler, scheduler, metrics, pack)
    for built in (space.searcher(config, tmp_path, "sweep"), space.scheduler(config)):
        assert type(cloudpickle.loads(cloudpickle.dumps(built))) is type(built)
    search = space.searcher(config, tmp_path, "sweep")
    assert 1.0 <= beta(search.suggest("t0")) <= 16.0  # the study exists and has sampled once
    search.save(str(tmp_path / "searcher.pkl"))
    restored = space.searcher(config, tmp_path, "sweep")
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert 1.0 <= beta(restored.suggest("t1")) <= 16.0
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


def test_a_grid_crosses_each_objectives_own_weights_and_the_seeds():
    from sweeper.config import validate_config
    from sweeper.run import space

    objectives = {"annealed_vae": {"gamma": [1000.0], "c_max": [5.0, 25.0]}, "dip_vae_i": {"lambda_od": [1.0, 2.0, 5.0]}}
    config = validate_config({"name": "g", "search": {"objectives": objectives, "seeds": 2}}, "test")
    assert [c.label() for c in space.grid_configurations(config)] == [
        "annealed_vae gamma=1000 c_max=5", "annealed_vae gamma=1000 c_max=25",
        "dip_vae_i lambda_od=1", "dip_vae_i lambda_od=2", "dip_vae_i lambda_od=5",
    ]  # fmt: skip
    assert (space.trial_count(config), space.model_count(config)) == (10, 10)
    grid = space.param_space(config)["configuration"]["grid_search"]
    assert grid[0] == {"objective": "annealed_vae", "weights": {"gamma": 1000.0, "c_max": 5.0}}


def test_optuna_chooses_an_objective_then_only_its_own_weights():
    """A conditional space: each weight an Optuna parameter of its own objective."""
    from sweeper.run.space import ConfigurationSpace

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = ConfigurationSpace({
        "beta_vae": {"beta": [1.0, 4.0]},
        "beta_tcvae": {"beta": __import__("sweeper.config", fromlist=["Range"]).Range(low=1.0, high=10.0, log=True)},
        "annealed_vae": {"gamma": [1000.0], "c_max": [5.0, 25.0]},
    })  # fmt: skip
    seen = set()
    for _ in range(30):
        trial = study.ask()
        configuration = Configuration.of(**space(trial)["configuration"])
        seen.add(configuration.objective)
        assert set(trial.params) == {"objective"} | {
            f"{configuration.objective}.{name}" for name, _ in configuration.weights
            if not (configuration.objective == "annealed_vae" and name == "gamma")  # one value: no parameter
        }
        if configuration.objective == "beta_tcvae":
            assert 1.0 <= configuration.weight("beta") <= 10.0
        study.tell(trial, 0.0)
    assert seen == {"beta_vae", "beta_tcvae", "annealed_vae"}


# -- the plan `launch --dry-run` and `validate` print ------------------------------------------
def _plan(search: dict, seeds: int = 1) -> list[str]:
    from sweeper.config import validate_config
    from sweeper.run.space import describe_plan

    return describe_plan(validate_config({"name": "plan", "search": {**search, "seeds": seeds}}, "test"))


def test_a_small_grid_lists_every_configuration_and_its_seeds():
    objectives = {"beta_vae": {"beta": [1.0, 4.0]}, "annealed_vae": {"gamma": [100.0], "c_max": [5.0]}}
    assert _plan({"objectives": objectives}, seeds=3) == [
        "beta_vae beta=1  seeds=[0, 1, 2]",
        "beta_vae beta=4  seeds=[0, 1, 2]",
        "annealed_vae gamma=100 c_max=5  seeds=[0, 1, 2]",
    ]


def test_a_large_grid_and_many_seeds_are_summarised():
    # 50 betas x 1000 seeds printed every seed list in full: 50 lines of 1000 numbers each.
    betas = [float(b) for b in range(1, 51)]
    lines = _plan({"objectives": {"beta_vae": {"beta": betas}}, "pack_seeds": True}, seeds=1000)
    assert lines == [
        "grid of 50 configurations, each over seeds=0..999 (1000) (one packed trial each):",
        "  beta_vae with beta in {1, 2, 3, ..., 50} (50 values)",
    ]


def test_an_optuna_plan_summarises_a_long_categorical_list_and_many_seeds():
    gamma = {"low": 1.0, "high": 1000.0, "log": True}
    betas = [float(b) for b in range(1, 101)]
    objectives = {"beta_vae": {"beta": betas}, "annealed_vae": {"gamma": gamma, "c_max": [0.0, 50.0]}}
    assert _plan({"kind": "optuna", "num_samples": 5, "objectives": objectives}, seeds=40)[:2] == [
        "optuna (tpe): 5 configurations of beta_vae with beta in {1, 2, 3, ..., 100} (100 values); "
        "annealed_vae with gamma in [1, 1000] (log), c_max in {0, 50}",
        "each repeated over seeds=0..39 (40); optimising the seeds' mean loss (min)",
    ]


def test_a_restored_sampler_does_not_sample_again_what_it_sampled_before():
    """Unpickled, as after a resume, a sampler must not start its seed's sequence over."""
    import pickle

    from sweeper.run.space import sampler

    for name in ("tpe", "random"):
        first = sampler(name)
        study = optuna.create_study(sampler=first)
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
        restored = pickle.loads(pickle.dumps(first))
        again = optuna.create_study(sampler=restored).ask().suggest_float("x", 0.0, 1.0)
        assert again not in [t.params["x"] for t in study.trials], name
        fresh = optuna.create_study(sampler=sampler(name)).ask().suggest_float("x", 0.0, 1.0)
        assert fresh == study.trials[0].params["x"]  # a new sweep is reproducible by its seed
