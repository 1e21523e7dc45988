"""What the CLI prints: the plan before a sweep, the table after it, a sweep's status."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from sweeper import space
from sweeper.config import SweepConfig, load_config
from sweeper.launch import RESOLVED_CONFIG, SweepOutcome, experiment_path, storage_root
from sweeper.progress import fmt
from sweeper.state import TrialState, find_sweep, read_record, read_trials
from trainables.trial import TrialSpec


def print_plan(config: SweepConfig, address: str | None) -> None:
    where = config.ray_address(address) or "local Ray (started and stopped by this command)"
    typer.echo(f"sweep {config.name!r}: {space.trial_count(config)} trials on {where}")
    for line in space.describe_plan(config):
        typer.echo(f"  {line}")
    t = config.training
    typer.echo(
        f"  each: {t.steps} steps, batch {t.batch_size}, lr {t.lr:g}, latents {config.model.latent_dim}, "
        f"metrics {config.eval.preset} every {config.eval.every} steps; "
        f"{config.resources.cpu:g} CPU, {config.resources.gpu:g} GPU"
    )
    checkpoints = f", checkpoints {config.checkpoints}" if config.checkpoints else ""
    typer.echo(f"  storage {storage_root(config)}{checkpoints}, tracking {config.tracking_uri()}")


def trial_table(rows: Sequence[TrialState], metric: str | None) -> str:
    columns = ["trial", "status", "beta", "C_max", "seed", "step", "recon", "kl"] + ([metric] if metric else [])
    body = []
    for t in rows:
        r = t.last_result
        body.append(
            [t.trial_id, t.status, fmt(t.beta), fmt(t.capacity), str(t.seed)]
            + [fmt(r.get(k, "-")) for k in ["step", "recon", "kl"] + ([metric] if metric else [])]
        )
    widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def print_summary(outcome: SweepOutcome) -> int:
    """The finished sweep's table and where to look; returns the number of failed trials."""
    rows = []
    for result in outcome.results:
        config = result.config
        rows.append(
            TrialState(
                trial_id=str(result.metrics.get("trial_id", "?")),
                status="ERROR" if result.error else "TERMINATED",
                beta=float(config["beta"]),
                capacity=float(config["capacity"]),
                seed=TrialSpec.from_config(config).seed,
                last_result=dict(result.metrics or {}),
                error=str(result.error).strip().splitlines()[-1] if result.error else None,
            )
        )
    rows.sort(key=lambda t: (t.beta, t.capacity, t.seed))
    record, metric = outcome.record, outcome.metric
    typer.echo("")
    typer.echo(trial_table(rows, metric))
    for t in rows:
        if t.error:
            typer.secho(f"trial {t.trial_id} failed: {t.error}", fg=typer.colors.RED)
    typer.echo("")
    typer.echo(f"sweep {record.sweep_id}: {len(rows)} trials, {sum(bool(t.error) for t in rows)} failed")
    typer.echo(f"  state:   {Path(record.storage) / record.sweep_id}")
    if record.checkpoints:
        typer.echo(f"  checkpoints: {experiment_path(record)}")
    typer.echo(f"  status:  sweeper status {record.sweep_id} --storage {record.storage}")
    typer.echo(f"  MLflow:  mlflow ui --backend-store-uri {record.tracking_uri}")
    typer.echo(f"           experiment {record.experiment_id}, parent run {record.parent_run_id}")
    return sum(bool(t.error) for t in rows)


def print_status(sweep: str, storage: Path) -> None:
    folder = find_sweep(sweep, storage)
    record = read_record(folder)
    trials = read_trials(experiment_path(record))
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
