"""A study's models: the finished models of several sweeps as one Arrow table, read from MLflow.

One row per finished model: `sweep`, `dataset`, `objective`, one column per
hyperparameter of the objectives (`beta`, `gamma`, `c_max`, `lambda_od`; null
where a model's objective has none), `seed`, `run_id`, then every metric any
run reported (as `sweeper.analyse.results` reads them: the scores under
`disent/`), and `udr` where it was computed from the checkpoints.

Where the columns come from:
- objective and hyperparameters: as `sweeper.analyse.results` reads them, from
  the run's `objective` and weights' params, or from the `beta` and `capacity`
  of a run of an earlier release;
- dataset: the sweep's resolved config, its `data` settings (name, subset,
  variant), so models of two sweeps on the same data compare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from sweeper.analyse.results import SweepRef, metric_names, runs_table, sweep_settings, trial_runs
from sweeper.analyse.selection import SCORE_PREFIX, UDR, finished
from sweeper.analyse.study_stats import find_configurations
from sweeper.errors import ConfigError, EnvironmentProblem
from sweeper.tags import WEIGHT_PARAMS
from trainables.settings import TrialSettings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from sweeper.analyse.udr import SweepUdr

KEY_SCHEMA = pa.schema(
    [("sweep", pa.string()), ("dataset", pa.string()), ("objective", pa.string())]
    + [(name, pa.float64()) for name in WEIGHT_PARAMS]
    + [("seed", pa.int64()), ("run_id", pa.string())]
)
KEY_COLUMNS: tuple[str, ...] = tuple(KEY_SCHEMA.names)


class NoCommonScore(ConfigError):
    """The sweeps share no score to compare them by (exit code 2: the wrong sweeps were named)."""


@dataclass
class StudyModels:
    """The study table and what was left out of it, one line each."""

    table: pa.Table
    problems: list[str] = field(default_factory=list)


def dataset_label(settings: TrialSettings) -> str:
    """The data a sweep trained on, as the study names it: `dsprites`, `dsprites-color`, `mpi3d-toy`."""
    data = settings.data.model_dump()
    variant = data.get("variant")
    parts = [data["name"], data.get("subset"), None if variant in (None, "none") else variant]
    return "-".join(str(part) for part in parts if part)


def models_table(runs: Sequence, sweep_id: str, dataset: str) -> pa.Table:
    """The finished runs of one sweep as study rows: KEY_COLUMNS, then every metric."""
    done = finished(runs_table(runs))  # each run's objective and weights, of either release
    run_ids = done["run_id"].to_pylist()
    keys = {
        "sweep": [sweep_id] * len(run_ids),
        "dataset": [dataset] * len(run_ids),
        "objective": done["objective"].to_pylist(),
        **{name: done[name].to_pylist() for name in WEIGHT_PARAMS},
        "seed": done["seed"].to_pylist(),
        "run_id": run_ids,
    }
    table = pa.table(keys, schema=KEY_SCHEMA)
    for name in metric_names(done):
        table = table.append_column(f"metric.{name}" if name in KEY_COLUMNS else name, done[name])
    return table


def configurations_udr(models: pa.Table, runs: pa.Table) -> SweepUdr:
    """UDR of one sweep's models (study rows) among the seeds of their configuration (objective and
    hyperparameters), from the checkpoints the runs (a results table) name."""
    from sweeper.analyse.udr import UdrModel, models_udr

    checkpoints = dict(zip(runs["run_id"].to_pylist(), runs["checkpoint"].to_pylist()))
    found = find_configurations(models)
    rows = zip(models["run_id"].to_pylist(), models["seed"].to_pylist(), found.index)
    ranked = [
        UdrModel(run, f"{found.names[index]} seed={seed} (run {run})", found.names[index], checkpoints[run])
        for run, seed, index in sorted(rows, key=lambda row: (row[2], row[1]))
    ]
    return models_udr(ranked)


def read_models(
    refs: Sequence[SweepRef],
    connect: Callable[[str], MlflowClient],
    udr: bool = True,
    echo: Callable[[str], None] = print,
) -> StudyModels:
    """Every finished model of the sweeps, one table; a sweep without finished models is an error (exit 3).

    With `udr`, each model's UDR among its configuration's seeds, from the checkpoints, as `select` does.
    """
    from sweeper.analyse.tagging import trial_problems

    parts, problems = [], []
    for ref in refs:
        client = connect(ref.tracking_uri)
        runs = trial_runs(client, ref)
        every = runs_table(runs)
        if every.num_rows == 0:
            raise EnvironmentProblem(f"sweep {ref.sweep_id} has no trial runs in {ref.tracking_uri}")
        done = finished(every).num_rows
        if done == 0:
            statuses = ", ".join(sorted(set(every["status"].to_pylist())))
            raise EnvironmentProblem(
                f"sweep {ref.sweep_id}: none of its {every.num_rows} trials has finished ({statuses}); "
                "nothing to study"
            )
        dataset = dataset_label(sweep_settings(client, ref))
        echo(f"sweep {ref.sweep_id}: {done} finished models on {dataset}")
        problems += [f"sweep {ref.sweep_id}: {line}" for line in trial_problems(every)]
        part = models_table(runs, ref.sweep_id, dataset)
        if udr:
            echo(f"sweep {ref.sweep_id}: UDR among each configuration's seeds, from the checkpoints")
            found = configurations_udr(part, every)
            part = part.append_column(UDR, pa.array([found.by_run.get(r) for r in part["run_id"].to_pylist()]))
            problems += [f"sweep {ref.sweep_id}: UDR: {line}" for line in found.problems]
        parts.append(part)
    table = pa.concat_tables(parts, promote_options="default")
    keys = [(name, "ascending") for name in ("dataset", "objective", *WEIGHT_PARAMS, "seed", "sweep")]
    return StudyModels(table.sort_by(keys), problems)


def study_scores(table: pa.Table, sweeps: Sequence[str]) -> tuple[list[str], list[str]]:
    """The scores the study compares, those every sweep reported (disentanglement, unsupervised, downstream
    and UDR), and those only some did; no score in common is an error (exit 2)."""
    candidates = [n for n in table.column_names if n.startswith(SCORE_PREFIX)] + (
        [UDR] if UDR in table.column_names else []
    )
    sweep_of = table["sweep"].to_pylist()
    reported = {
        name: {sweep for sweep, value in zip(sweep_of, table[name].to_pylist()) if value is not None}
        for name in candidates
    }
    common = [name for name in candidates if reported[name] >= set(sweeps)]
    if not common:
        by_sweep = {s: [n for n in candidates if s in reported[n]] for s in sweeps}
        detail = "; ".join(f"{s}: {', '.join(names) or 'none'}" for s, names in by_sweep.items())
        raise NoCommonScore(f"the sweeps have no score in common to compare them by ({detail})")
    return common, [name for name in candidates if name not in common and reported[name]]
