"""The search: what Tune varies across trials and who chooses the values.

A grid crosses every beta, C_max and seed. Optuna samples (beta, C_max) and
a Repeater runs each sample once per seed, reporting the seeds' mean back to
Optuna, or a failure if any seed failed; the study is journalled in the sweep
folder so it outlives the driver process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Repeater, Searcher

from sweeper.config import Range, SweepConfig, Values
from trainables.trial import TRIAL_INDEX

OPTUNA_JOURNAL = "optuna.journal"


def _domain(values: Values) -> Any:
    if isinstance(values, Range):
        return tune.loguniform(values.low, values.high) if values.log else tune.uniform(values.low, values.high)
    return tune.choice(list(values)) if len(values) > 1 else values[0]


def param_space(config: SweepConfig) -> dict[str, Any]:
    settings = config.trial_settings().model_dump(mode="json")
    search = config.search
    if search.kind == "grid":
        return {
            "beta": tune.grid_search(list(search.beta)),
            "capacity": tune.grid_search(list(search.capacity)),
            TRIAL_INDEX: tune.grid_search(list(range(search.seeds))),
            "settings": settings,
        }
    return {"beta": _domain(search.beta), "capacity": _domain(search.capacity), "settings": settings}


def num_samples(config: SweepConfig) -> int:
    """Tune's num_samples: 1 for a grid (the grid is the sample), configurations x seeds for Optuna."""
    search = config.search
    return 1 if search.kind == "grid" else int(search.num_samples or 0) * search.seeds


def trial_count(config: SweepConfig) -> int:
    search = config.search
    if search.kind == "grid":
        return len(search.beta) * len(search.capacity) * search.seeds
    return num_samples(config)


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
        metric = self.searcher.metric
        if error:
            self.failed_groups.add(group.primary_trial_id)
        group.report(trial_id, result[metric] if result and metric in result else np.nan)
        if not group.finished_reporting():
            return
        if group.primary_trial_id in self.failed_groups:
            self.searcher.on_trial_complete(group.primary_trial_id, result=None, error=True)
        else:
            scores = group.scores()
            value = float(np.nanmean(scores)) if not np.isnan(scores).all() else None
            self.searcher.on_trial_complete(group.primary_trial_id, result=None if value is None else {metric: value})


def searcher(config: SweepConfig, sweep_dir: Path, study_name: str) -> Searcher | None:
    search = config.search
    if search.kind == "grid":
        return None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search.optuna import OptunaSearch

    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=0),
        "gp": lambda: optuna.samplers.GPSampler(seed=0),
        "random": lambda: optuna.samplers.RandomSampler(seed=0),
    }
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / OPTUNA_JOURNAL)))
    optuna_search = OptunaSearch(
        metric=search.metric,
        mode=search.mode,
        sampler=samplers[search.sampler](),
        storage=storage,
        study_name=study_name,
    )
    return SeedRepeater(optuna_search, repeat=search.seeds)


def scheduler(config: SweepConfig) -> TrialScheduler:
    """ASHA stops weak trials early on the search metric, measured in training steps."""
    search = config.search
    if search.scheduler == "asha":
        return ASHAScheduler(
            time_attr="step",
            metric=search.metric,
            mode=search.mode,
            max_t=config.training.steps,
            grace_period=max(config.eval.every, config.training.report_every),
        )
    return FIFOScheduler()


def describe_plan(config: SweepConfig) -> list[str]:
    """Human-readable lines: every trial of a grid, or the shape of an Optuna search."""
    search = config.search
    if search.kind == "grid":
        lines = []
        for beta in search.beta:
            for capacity in search.capacity:
                seeds = [config.training.seed_offset + i for i in range(search.seeds)]
                lines.append(f"beta={beta:g}  C_max={capacity:g}  seeds={seeds}")
        return lines
    return [
        f"optuna ({search.sampler}): {search.num_samples} configurations of beta in {search.beta}, "
        f"C_max in {search.capacity}",
        f"each repeated over seeds {config.training.seed_offset}..{config.training.seed_offset + search.seeds - 1};"
        f" optimising the seeds' mean {search.metric} ({search.mode})",
    ]
