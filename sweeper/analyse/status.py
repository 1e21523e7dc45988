"""`sweeper status`: a running or finished sweep's trials, from its folder alone (no Ray, no MLflow)."""

from __future__ import annotations

from pathlib import Path

import typer

from sweeper.analyse.state import read_trials
from sweeper.config import load_config
from sweeper.console import trial_table
from sweeper.record import RESOLVED_CONFIG, SweepRecord, find_sweep


def print_status(sweep: str, storage: Path) -> None:
    folder = find_sweep(sweep, storage)
    record = SweepRecord.read(folder)
    trials = read_trials(record.experiment_path)
    metric = load_config(folder / RESOLVED_CONFIG).search.metric
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials yet"
    typer.echo(f"sweep {record.sweep_id} ({folder}): {summary}")
    typer.echo(trial_table(trials, metric))
    for t in trials:
        if t.error:
            typer.echo(f"trial {t.trial_id} failed: {t.error}")
    typer.echo(f"MLflow: {record.tracking_uri}, parent run {record.parent_run_id}")
