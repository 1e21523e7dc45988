"""`sweeper status`: a running or finished sweep's trials, from its folder alone (no Ray, no MLflow).

For an Optuna search it also shows the study's Pareto front of the search
objectives (the best trial, with one), read from the journal in the folder.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sweeper.analyse.state import read_trials
from sweeper.analyse.study import WEIGHT_PARAM_PREFIX, StudyUnreadable, read_study
from sweeper.config import SearchConfig, load_config
from sweeper.console import fmt, trial_table
from sweeper.record import RESOLVED_CONFIG, SweepRecord, find_sweep


def print_status(sweep: str, storage: Path) -> None:
    folder = find_sweep(sweep, storage)
    record = SweepRecord.read(folder)
    trials = read_trials(record.experiment_path)
    search = load_config(folder / RESOLVED_CONFIG).search
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
    typer.echo(f"sweep {record.sweep_id} ({folder}): {summary}")
    typer.echo(trial_table(trials, search.metrics[0]))
    for t in trials:
        if t.error:
            typer.echo(f"trial {t.trial_id} failed: {t.error}")
    for line in study_lines(folder, search):
        typer.echo(line)
    typer.echo(f"MLflow: {record.tracking_uri}, parent run {record.parent_run_id}")


def study_lines(folder: Path, search: SearchConfig) -> list[str]:
    """The Optuna study's states and its Pareto front, one line per front trial; none without a study."""
    try:
        study = read_study(folder)
    except StudyUnreadable as exc:
        return [f"optuna study: unreadable ({exc})"]
    if study is None:
        return []
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(study.states.items())) or "no trials yet"
    lines = [f"optuna study: {states}; Pareto front of {search.metrics_text()}, seed means:"]
    for t in study.front:
        params = "  ".join(f"{_param_name(k)}={fmt(v)}" for k, v in sorted(t.params.items()))
        values = "  ".join(f"{m} {fmt(v)}" for m, v in zip(search.metrics, t.values))
        lines.append(f"  optuna trial {t.number}  {params}  {values}")
    return lines


def _param_name(name: str) -> str:
    """A study param as the configuration's label names it (`weights/gamma` is gamma; C_max in earlier studies)."""
    return "C_max" if name == "capacity" else name.removeprefix(WEIGHT_PARAM_PREFIX)
