"""The `sweeper` command: launch, validate and inspect sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sweeper.errors import SweeperError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__)

ConfigArg = Annotated[Path, typer.Argument(help="sweep config file (YAML)")]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="override a config key: --set training.steps=200 (repeatable)")
]


def _fail(error: SweeperError) -> None:
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    raise typer.Exit(error.exit_code)


@app.command()
def validate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Check a config file without starting anything."""
    from sweeper.config import load_config
    from sweeper.space import describe_plan, trial_count

    try:
        cfg = load_config(config, set_ or [])
    except SweeperError as exc:
        _fail(exc)
    typer.echo(f"{config}: valid; {trial_count(cfg)} trials")
    for line in describe_plan(cfg):
        typer.echo(f"  {line}")


@app.command()
def launch(
    config: ConfigArg,
    address: Annotated[
        Optional[str], typer.Option(help="Ray cluster to join (host:port, ray://..., auto); env RAY_ADDRESS")
    ] = None,
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and stop")] = False,
) -> None:
    """Start a sweep: Ray Tune trials of beta-VAE training, tracked in MLflow."""
    from sweeper.config import load_config
    from sweeper.console import print_plan, print_summary

    try:
        cfg = load_config(config, set_ or [])
    except SweeperError as exc:
        _fail(exc)
    print_plan(cfg, address)
    if dry_run:
        return
    from sweeper.launch import launch as run_sweep

    try:
        outcome = run_sweep(cfg, address=address, echo=typer.echo)
    except SweeperError as exc:
        _fail(exc)
    failed = print_summary(outcome, cfg.search.metric)
    if failed:
        raise typer.Exit(1)


@app.command()
def status(
    sweep: Annotated[str, typer.Argument(help="sweep id (under the storage folder) or the sweep folder")],
    storage: Annotated[Path, typer.Option(help="folder holding the sweeps")] = Path("./sweeps"),
) -> None:
    """Show a running or finished sweep's trials from its stored state."""
    from sweeper.console import print_status

    try:
        print_status(sweep, storage)
    except SweeperError as exc:
        _fail(exc)
