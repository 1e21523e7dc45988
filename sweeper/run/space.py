"""The search: what Tune varies across trials and who chooses the values.

A grid crosses each objective's weights with each other and with the seeds.
Optuna samples an objective and its weights (`ConfigurationSpace`) and a
Repeater runs each sample once per seed, reporting the seeds' mean back to
Optuna, or a failure if any seed failed; the study is journalled in the sweep
folder so it outlives the driver process.

With `search.pack_seeds` one trial trains all seeds of a configuration as one
stacked model (`trainables.trainer`) and reports their means itself, while it
trains: Optuna then needs no Repeater (each configuration is one trial, told
its seed mean at the end, or a failure if a seed failed), and ASHA, or the
Pareto scheduler (`sweeper.run.pareto`) for several objectives, stops whole
packs on the seed means. A pack a scheduler stopped is told to Optuna as
pruned: its values are those of a shorter training, not a result.

`search.metric` may name several metrics; every step here passes them all,
and Optuna keeps a multi-objective study whose Pareto front `sweeper status`
shows.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Repeater, Searcher

from sweeper.config import Range, SweepConfig, Values
from sweeper.errors import EnvironmentProblem
from sweeper.record import OPTUNA_JOURNAL
from sweeper.run.pareto import ParetoHalving
from sweeper.tags import OPTUNA_OBJECTIVE_PARAM, optuna_weight_param
from trainables.trial import CONFIGURATION_KEY, MODELS_FAILED, PACK_SEEDS, TRIAL_INDEX, Configuration, seed_of


def seeds(config: SweepConfig) -> list[int]:
    """The seeds every configuration is trained with."""
    return [seed_of(config.training.seed_offset, i) for i in range(config.search.seeds)]


def grid_configurations(config: SweepConfig) -> list[Configuration]:
    """Every configuration of a grid: each objective crossed with the values of its own weights."""
    out = []
    for kind, weights in config.search.objectives.items():
        for values in itertools.product(*weights.values()):
            out.append(Configuration.of(kind, dict(zip(weights, values))))
    return out


class ConfigurationSpace:
    """Optuna's define-by-run space of a sweep: the objective (a categorical choice when there are
    several), then that objective's own weights. Each weight is an Optuna parameter of its own per
    objective (`beta_tcvae.beta` is not `beta_vae.beta`), so TPE never mixes two objectives' histories.

    Plain data only: Tune pickles the searcher, and this with it.
    """

    def __init__(self, objectives: dict[str, dict[str, Values]]) -> None:
        self.objectives = {
            kind: {name: values.model_dump() if isinstance(values, Range) else tuple(values)
                   for name, values in weights.items()}
            for kind, weights in objectives.items()
        }  # fmt: skip

    def __call__(self, trial: Any) -> dict[str, Any]:
        kinds = list(self.objectives)
        kind = trial.suggest_categorical(OPTUNA_OBJECTIVE_PARAM, kinds) if len(kinds) > 1 else kinds[0]
        weights = {}
        for name, values in self.objectives[kind].items():
            param = optuna_weight_param(kind, name)
            if isinstance(values, dict):  # a range
                weights[name] = trial.suggest_float(param, values["low"], values["high"], log=values["log"])
            elif len(values) > 1:
                weights[name] = trial.suggest_categorical(param, values)
            else:
                weights[name] = values[0]
        return {CONFIGURATION_KEY: Configuration.of(kind, weights).to_config()}


def param_space(config: SweepConfig) -> dict[str, Any]:
    settings = config.trial_settings().model_dump(mode="json")
    search = config.search
    # A pack names its seeds; single trials get their repeat index from the grid or the Repeater.
    repeat = {PACK_SEEDS: seeds(config)} if search.pack_seeds else {}
    if search.kind == "grid":
        if not search.pack_seeds:
            repeat = {TRIAL_INDEX: tune.grid_search(list(range(search.seeds)))}
        grid = [c.to_config() for c in grid_configurations(config)]
        return {CONFIGURATION_KEY: tune.grid_search(grid), **repeat, "settings": settings}
    return {**repeat, "settings": settings}  # Optuna's define-by-run space adds the configuration


def num_samples(config: SweepConfig) -> int:
    """Tune's num_samples: 1 for a grid (the grid is the sample); for Optuna its configurations, times
    the seeds unless they are packed."""
    search = config.search
    if search.kind == "grid":
        return 1
    return int(search.num_samples or 0) * (1 if search.pack_seeds else search.seeds)


def configuration_count(config: SweepConfig) -> int:
    return config.search.trained_configurations()


def trial_count(config: SweepConfig) -> int:
    """Ray Tune trials: one per model, or one per configuration when its seeds are packed."""
    search = config.search
    return configuration_count(config) * (1 if search.pack_seeds else search.seeds)


def describe_count(config: SweepConfig) -> str:
    """`6 trials`, or `2 trials (6 models)` when seeds are packed."""
    trials, models = trial_count(config), model_count(config)
    return f"{trials} trials" + (f" ({models} models)" if models != trials else "")


def model_count(config: SweepConfig) -> int:
    """Models trained, packed or not: one MLflow child run each."""
    return configuration_count(config) * config.search.seeds


class SeedRepeater(Repeater):
    """Ray's Repeater, except that a configuration with a failed seed is a failed Optuna trial.

    Ray's Repeater averages the seeds that finished (a failed seed counts as
    NaN and `nanmean` drops it), so a beta that diverges on one seed of three
    would reach Optuna as a good value. Divergence is exactly what a beta sweep
    must not hide: here the whole configuration is told to Optuna as failed.
    """

    def __init__(self, searcher: Searcher, repeat: int) -> None:
        super().__init__(searcher, repeat=repeat, set_index=True)
        self.failed_groups: set[str] = set()  # primary trial ids of groups with a failed seed

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False, **kwargs: Any) -> None:
        group = self._trial_id_to_group[trial_id]
        metrics = objectives(self.searcher)
        if error:
            self.failed_groups.add(group.primary_trial_id)
        group.report(trial_id, tuple(float(result.get(m, np.nan)) if result else np.nan for m in metrics))
        if not group.finished_reporting():
            return
        if group.primary_trial_id in self.failed_groups:
            self.searcher.on_trial_complete(group.primary_trial_id, result=None, error=True)
            return
        scores = np.array(group.scores(), dtype=float)  # a row per seed, a column per objective
        if np.isnan(scores).all(axis=0).any():
            self.searcher.on_trial_complete(group.primary_trial_id, result=None)
        else:
            means = np.nanmean(scores, axis=0)
            self.searcher.on_trial_complete(group.primary_trial_id, result=dict(zip(metrics, map(float, means))))


def objectives(searcher: Searcher) -> list[str]:
    """The searcher's metric names, a list whether it optimises one or several."""
    metric = searcher.metric
    return list(metric) if isinstance(metric, list) else [metric]


class PackSearcher(Searcher):
    """The searcher of packed trials: a pack's result already carries its seed means, so it goes to
    Optuna as it is, except that a pack with a failed seed is a failed Optuna trial (as SeedRepeater
    makes it for single trials), and a pack that a scheduler stopped before `steps` is a pruned one.

    Tune hands a stopped trial's last result to the searcher as if it were final; Optuna would
    learn the values of a shorter training as complete. Ray's OptunaSearch tells a trial that ends
    without a result and without an error as PRUNED, so that is what a stopped pack gets.
    """

    def __init__(self, searcher: Searcher, steps: int) -> None:
        self.searcher, self.steps = searcher, steps
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def suggest(self, trial_id: str) -> dict | None:
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if all(m in result for m in objectives(self.searcher)):  # scores come only with an evaluation
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False, **kwargs: Any) -> None:
        if result and result.get(MODELS_FAILED, 0):
            result, error = None, True
        elif result and not error and result.get("step", self.steps) < self.steps:
            result = None  # stopped early: pruned
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)


def sampler(name: str, seed: int = 0, restored: bool = False) -> Any:
    """Optuna's sampler of that name, made to pickle as its name and seed.

    Ray Tune pickles the searcher, and with it the sampler, when it builds the
    Tuner and at every searcher checkpoint; a sampler's own attributes change
    between Optuna releases (5.1's NSGAIISampler holds a thread lock, which no
    pickle takes). Pickled as `sampler(name, seed)`, a sampler is rebuilt
    fresh when unpickled: whatever state it needs comes from the study, which
    the journal in the sweep folder holds and `resume` reads anyway. A
    restored sampler draws from a fresh seed: its first one would sample
    again what it sampled before the driver died.
    """
    import optuna

    classes = {
        "tpe": optuna.samplers.TPESampler,
        "gp": optuna.samplers.GPSampler,
        "random": optuna.samplers.RandomSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
    }
    base = classes[name]
    rebuilt = type(base.__name__, (base,), {"__reduce__": lambda self: (sampler, (name, seed, True))})
    built = rebuilt(seed=seed)
    if restored:
        built.reseed_rng()
    return built


def searcher(config: SweepConfig, sweep_dir: Path, study_name: str) -> Searcher | None:
    search = config.search
    if search.kind == "grid":
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search.optuna import OptunaSearch

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / OPTUNA_JOURNAL)))
    optuna_search = OptunaSearch(
        space=ConfigurationSpace(search.objectives),
        metric=search.metric,  # a list for several objectives: Optuna then keeps a multi-objective study
        mode=search.mode,
        sampler=sampler(search.sampler),
        storage=storage,
        study_name=study_name,
    )
    if search.pack_seeds:
        return PackSearcher(optuna_search, config.training.steps)
    return SeedRepeater(optuna_search, repeat=search.seeds)


def check_search(config: SweepConfig) -> None:
    """Build the searcher and the scheduler as a sweep would, and pickle them as Ray Tune does.

    Tune pickles both when it builds the Tuner and when it checkpoints the
    sweep; a release of Optuna or Ray that breaks either would otherwise end
    `launch` in a traceback after the sweep's folder and MLflow run exist.
    Here it is an environment problem naming the packages, before anything is made.
    """
    import optuna
    import ray
    from ray import cloudpickle

    versions = f"optuna {optuna.__version__}, ray {ray.__version__}"
    search = config.search
    with tempfile.TemporaryDirectory() as folder:
        builders = {"searcher": lambda: searcher(config, Path(folder), "check"), "scheduler": lambda: scheduler(config)}
        for what, build in builders.items():
            try:
                built = build()
            except Exception as error:
                raise EnvironmentProblem(
                    f"the {what} of search.sampler={search.sampler!r}, search.scheduler={search.scheduler!r} "
                    f"cannot be built with {versions}: {type(error).__name__}: {error}"
                ) from error
            try:
                cloudpickle.loads(cloudpickle.dumps(built))
            except Exception as error:
                raise EnvironmentProblem(
                    f"the {what} ({type(built).__name__}) cannot be saved as Ray Tune saves it, with {versions}: "
                    f"{type(error).__name__}: {error}"
                ) from error


def scheduler(config: SweepConfig) -> TrialScheduler:
    """ASHA, or the Pareto scheduler, stops weak trials early on the search metrics, in training steps."""
    search = config.search
    rungs = {
        "max_t": config.training.steps,
        "grace_period": max(config.eval.every, config.training.report_every),
        "reduction_factor": search.reduction_factor,
    }
    if search.scheduler == "asha":
        return ASHAScheduler(time_attr="step", metric=search.metric, mode=search.mode, **rungs)
    if search.scheduler == "pareto":
        return ParetoHalving(search.metrics, search.modes, time_attr="step", **rungs)
    return FIFOScheduler()


PLAN_LINES = 40  # a grid of more configurations (the study has 36) is described by its space, not line by line
LISTED = 8  # values listed in full; a longer list shows its first and last values and its length


def describe_plan(config: SweepConfig) -> list[str]:
    """Human-readable lines: every trial of a small grid, or the shape of a larger grid or an Optuna
    search; long lists of values and seeds are summarised."""
    search = config.search
    span = _seed_span(seeds(config))
    spaces = [
        f"{kind} with " + ", ".join(f"{name} in {_shown(values)}" for name, values in weights.items())
        for kind, weights in search.objectives.items()
    ]
    if search.kind == "grid" and configuration_count(config) <= PLAN_LINES:
        packed = " (one packed trial)" if search.pack_seeds else ""
        return [f"{c.label()}  seeds={span}{packed}" for c in grid_configurations(config)]
    if search.kind == "grid":
        packed = " (one packed trial each)" if search.pack_seeds else ""
        count = f"grid of {configuration_count(config)} configurations, each over seeds={span}{packed}:"
        return [count, *(f"  {space}" for space in spaces)]
    how = "trained together as one packed trial" if search.pack_seeds else "repeated"
    return [
        f"optuna ({search.sampler}): {search.num_samples} configurations of {'; '.join(spaces)}",
        f"each {how} over seeds={span}; optimising the seeds' mean {search.metrics_text()}",
        *([f"stopping trials early: {search.scheduler}, 1 in {search.reduction_factor} go on at each rung"]
          if search.scheduler != "fifo" else []),
    ]  # fmt: skip


def _shown(values: Values) -> str:
    """`{1, 2, 4}`, `{1, 2, 3, ..., 20} (20 values)` for a long list, or a range as `[1, 16] (log)`."""
    if isinstance(values, Range):
        return f"[{values.low:g}, {values.high:g}]" + (" (log)" if values.log else "")
    shown = [f"{v:g}" for v in values]
    if len(shown) > LISTED:
        return "{" + ", ".join(shown[:3]) + f", ..., {shown[-1]}}} ({len(shown)} values)"
    return "{" + ", ".join(shown) + "}"


def _seed_span(repeats: list[int]) -> str:
    """`[0, 1, 2]`, or `0..999 (1000)` for many: a configuration's seeds are consecutive (`seed_of`)."""
    return str(repeats) if len(repeats) <= LISTED else f"{repeats[0]}..{repeats[-1]} ({len(repeats)})"
