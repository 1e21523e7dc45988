"""What `launch` prints before a sweep (the plan) and after it (the table and where to look)."""

from __future__ import annotations

import typer

from sweeper.config import SweepConfig, effective_ray_address, effective_tracking_uri
from sweeper.console import TrialRow, last_line, trial_table
from sweeper.run import space
from sweeper.run.budget import Budget, budget
from sweeper.run.datasets import memory_line
from sweeper.run.launch import SweepOutcome, storage_root
from sweeper.run.write_rate import write_rate_lines
from trainables.trial import TrialSpec


def print_plan(config: SweepConfig, address: str | None, rate: float | None = None) -> None:
    where = effective_ray_address(config, address) or "local Ray (started and stopped by this command)"
    typer.echo(f"sweep {config.name!r}: {space.describe_count(config)} on {where}")
    for line in space.describe_plan(config):
        typer.echo(f"  {line}")
    t = config.training
    typer.echo(
        f"  each: {t.steps} steps, batch {t.batch_size}, lr {t.lr:g}, latents {config.model.latent_dim}, "
        f"metrics {config.eval.preset} every {config.eval.every} steps; "
        f"{config.resources.cpu:g} CPU, {config.resources.gpu:g} GPU"
    )
    checkpoints = f", checkpoints {config.checkpoints}" if config.checkpoints else ""
    typer.echo(f"  storage {storage_root(config)}{checkpoints}, tracking {effective_tracking_uri(config)}")
    typer.echo(f"  {memory_line(config)}")
    work = budget(config, rate)
    for line in [*budget_lines(work, config), *write_rate_lines(config, work, address)]:
        typer.echo(f"  {line}")


def budget_lines(work: Budget, config: SweepConfig) -> list[str]:
    """The work, and its time and device-hours at the rate it names (or why there is no estimate)."""
    batch = config.training.batch_size
    lines = [f"work: {work.models} models x {work.steps:,} steps x batch {batch} = {work.images:,} images"]
    if work.rate is None or work.trial_hours is None:
        return lines + ["estimate: no measured rate for this device in docs/benchmarks.md; pass --rate IMAGES_PER_S"]
    hours, resources = work.trial_hours, config.resources
    device = f"{hours * resources.gpu:.3g} GPU-hours" if resources.gpu else f"{hours * resources.cpu:.3g} CPU-hours"
    bound = ", at most: trials stopped early train less" if config.search.scheduler != "fifo" else ""
    rate = f"{work.rate.images_per_s:,.0f} images/s per trial, from {work.rate.source}"
    lines.append(f"estimate: {duration(hours)} of trial time, one trial after another; {device} (at {rate}){bound}")
    if len(work.by_objective) > 1:
        share = (resources.gpu or resources.cpu) * hours / work.models
        unit = "GPU-hours" if resources.gpu else "CPU-hours"
        lines.append(
            "per objective, at that rate (measured for the beta-VAE; the objectives' own terms are not in it): "
            + ", ".join(f"{kind} {n} models {n * share:.3g} {unit}" for kind, n in work.by_objective.items())
        )
    return lines


def duration(hours: float) -> str:
    seconds = hours * 3600
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{hours:.1f} h"


def print_summary(outcome: SweepOutcome) -> int:
    """The finished sweep's table and where to look; returns the number of failed trials."""
    rows = sorted(
        (
            TrialRow(
                trial_id=str(result.metrics.get("trial_id", "?")),
                status="ERROR" if result.error else "TERMINATED",
                spec=TrialSpec.from_config(result.config),
                last_result=dict(result.metrics or {}),
                error=last_line(result.error) if result.error else None,
            )
            for result in outcome.results
        ),
        key=TrialRow.sort_key,
    )
    record, metric = outcome.record, outcome.metric
    typer.echo("")
    typer.echo(trial_table(rows, metric))
    for t in rows:
        if t.error:
            typer.secho(f"trial {t.trial_id} failed: {t.error}", fg=typer.colors.RED)
    failed = sum(bool(t.error) for t in rows)
    typer.echo("")
    typer.echo(f"sweep {record.sweep_id}: {len(rows)} trials, {failed} failed")
    typer.echo(f"  state:   {record.folder}")
    if record.checkpoints:
        typer.echo(f"  checkpoints: {record.experiment_path}")
    typer.echo(f"  status:  sweeper status {record.sweep_id} --storage {record.storage}")
    typer.echo(f"  MLflow:  mlflow ui --backend-store-uri {record.tracking_uri}")
    typer.echo(f"           experiment {record.experiment_id}, parent run {record.parent_run_id}")
    return failed
