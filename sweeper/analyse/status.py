"""`sweeper status`: a running or finished sweep's trials, from its folder alone (no Ray, no MLflow).

For an Optuna search it also shows the study's Pareto front of the search
objectives (the best trial, with one), read from the journal in the folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from sweeper.analyse.state import read_trials
from sweeper.analyse.study import StudyUnreadable, read_study
from sweeper.config import SearchConfig, load_config
from sweeper.console import TrialRow, fmt, trial_table
from sweeper.record import RESOLVED_CONFIG, SweepRecord, find_sweep


def print_status(sweep: str, storage: Path) -> None:
    folder = find_sweep(sweep, storage)
    record = SweepRecord.read(folder)
    config = load_config(folder / RESOLVED_CONFIG)
    search = config.search
    trials = [stopped_early(t, config.training.steps) for t in read_trials(record.experiment_path)]
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


def stopped_early(trial: TrialRow, steps: int) -> TrialRow:
    """The trial as STOPPED if it ended before its last step: Tune calls a trial that ASHA or the Pareto
    scheduler stopped at a rung TERMINATED, like one that trained to the end. Its MLflow runs say the same
    (KILLED, with the rung's step)."""
    step = trial.last_result.get("step")
    if trial.status == "TERMINATED" and isinstance(step, int) and step < steps:
        return replace(trial, status="STOPPED")
    return trial


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
    """A study param as the configuration's label names it (`annealed_vae.gamma` is gamma; C_max in earlier
    studies)."""
    return "C_max" if name == "capacity" else name.rpartition(".")[2]
