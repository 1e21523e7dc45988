"""The `sweeper` command: launch, validate, inspect and report on sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from sweeper.errors import ConfigError, SweeperError
from sweeper.tags import DEFAULT_SCORE, DEFAULT_STORAGE

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__)

ConfigArg = Annotated[Path, typer.Argument(help="sweep config file (YAML)")]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="override a config key: --set training.steps=200 (repeatable)")
]


def _fail(error: SweeperError) -> None:
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    raise typer.Exit(error.exit_code)


def _no_credentials(uri: str | None, option: str) -> None:
    """Refuse (exit 2) a URI option holding a user name or password, before it is used or echoed."""
    from sweeper.uris import refuse_credentials

    try:
        refuse_credentials(uri, option)
    except SweeperError as exc:
        _fail(exc)


@app.command()
def validate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Check a config file, and what it points at on this machine, without starting anything."""
    from sweeper.config import check_machine, load_config
    from sweeper.run.datasets import memory_line
    from sweeper.run.space import describe_count, describe_plan

    try:
        cfg = check_machine(load_config(config, set_ or []), str(config))
    except SweeperError as exc:
        _fail(exc)
    typer.echo(f"{config}: valid; {describe_count(cfg)}")
    for line in [*describe_plan(cfg), memory_line(cfg)]:
        typer.echo(f"  {line}")


@app.command()
def launch(
    config: ConfigArg,
    address: Annotated[
        Optional[str], typer.Option(help="Ray cluster to join (host:port, ray://..., auto); env RAY_ADDRESS")
    ] = None,
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and stop")] = False,
    rate: Annotated[
        Optional[float],
        typer.Option(min=1e-6, help="images/s per trial for the estimate; default: docs/benchmarks.md"),
    ] = None,
) -> None:
    """Start a sweep: Ray Tune trials of VAE training (the study's objectives), tracked in MLflow."""
    from sweeper.config import check_machine, load_config
    from sweeper.run.summary import print_plan

    _no_credentials(address, "--address")
    try:
        cfg = check_machine(load_config(config, set_ or []), str(config))
    except SweeperError as exc:
        _fail(exc)
    print_plan(cfg, address, rate)
    if dry_run:
        return
    from sweeper.run.launch import launch as run_sweep

    try:
        outcome = run_sweep(cfg, address=address, echo=typer.echo)
    except SweeperError as exc:
        _fail(exc)
    _exit_after(outcome)


def _exit_after(outcome) -> None:  # noqa: ANN001 - a SweepOutcome, imported lazily
    """1 when a trial failed; 3 when MLflow did not take every write (they are kept in the sweep folder)."""
    from sweeper.run.summary import print_summary

    failed = print_summary(outcome)
    if outcome.unwritten:
        typer.secho(
            f"error: {outcome.unwritten} tracking writes are not in MLflow yet (see the lines above)",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(3)
    if failed:
        raise typer.Exit(1)


@app.command()
def resume(
    sweep: Annotated[str, typer.Argument(help="sweep id (under the storage folder) or the sweep folder")],
    storage: Annotated[Path, typer.Option(help="folder holding the sweeps")] = Path(DEFAULT_STORAGE),
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join; env RAY_ADDRESS")] = None,
) -> None:
    """Continue a sweep whose driver stopped: finished trials are kept, the rest resume from checkpoints."""
    from sweeper.record import find_sweep
    from sweeper.run.launch import resume as resume_sweep

    _no_credentials(address, "--address")
    try:
        folder = find_sweep(sweep, storage)
        outcome = resume_sweep(folder, address=address, echo=typer.echo)
    except SweeperError as exc:
        _fail(exc)
    _exit_after(outcome)


@app.command()
def status(
    sweep: Annotated[str, typer.Argument(help="sweep id (under the storage folder) or the sweep folder")],
    storage: Annotated[Path, typer.Option(help="folder holding the sweeps")] = Path(DEFAULT_STORAGE),
) -> None:
    """Show a running or finished sweep's trials from its stored state."""
    from sweeper.analyse.status import print_status

    try:
        print_status(sweep, storage)
    except SweeperError as exc:
        _fail(exc)


SweepArg = Annotated[str, typer.Argument(help="sweep id (under the storage folder) or the sweep folder")]
ByOpt = Annotated[str, typer.Option("--by", help="score to pick by, as the trials report it")]
ModeOpt = Annotated[Literal["max", "min"], typer.Option(help="max: a higher score is better; min: lower")]
StorageOpt = Annotated[Path, typer.Option(help="folder holding the sweeps")]
TrackingOpt = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", help="find the sweep by id in this MLflow store instead of its folder"),
]
UdrOpt = Annotated[bool, typer.Option("--udr/--no-udr", help="rank seeds by UDR from their checkpoints")]


@app.command()
def select(
    sweep: SweepArg,
    by: ByOpt = DEFAULT_SCORE,
    mode: ModeOpt = "max",
    storage: StorageOpt = Path(DEFAULT_STORAGE),
    tracking_uri: TrackingOpt = None,
    udr: UdrOpt = True,
) -> None:
    """Pick the models of a sweep (each objective's trade-off, seed sensitivity, UDR) and tag them in MLflow."""
    from sweeper.analyse.results import locate_sweep
    from sweeper.analyse.tagging import print_selection, select_and_tag
    from sweeper.tracking.client import connect

    _no_credentials(tracking_uri, "--tracking-uri")
    try:
        ref = locate_sweep(sweep, storage, tracking_uri)
        chosen = select_and_tag(connect(ref.tracking_uri), ref, by, maximize=mode == "max", udr=udr)
    except SweeperError as exc:
        _fail(exc)
    print_selection(chosen, typer.echo)


@app.command()
def report(
    sweep: SweepArg,
    by: ByOpt = DEFAULT_SCORE,
    mode: ModeOpt = "max",
    out: Annotated[
        Optional[Path],
        typer.Option(
            help="report folder, new or empty or made by an earlier report (only its files are replaced and "
            "logged); default: <sweep folder>/report"
        ),
    ] = None,
    storage: StorageOpt = Path(DEFAULT_STORAGE),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Select, then write an HTML report with figures and the Parquet table, logged to the sweep's parent run."""
    from sweeper.analyse.report import report_folder, write_report
    from sweeper.analyse.results import locate_sweep
    from sweeper.analyse.tagging import print_selection, select_and_tag
    from sweeper.tracking.client import connect

    _no_credentials(tracking_uri, "--tracking-uri")
    try:
        ref = locate_sweep(sweep, storage, tracking_uri)
        client = connect(ref.tracking_uri)
        chosen = select_and_tag(client, ref, by, maximize=mode == "max")
        print_selection(chosen, typer.echo)
        page = write_report(client, chosen, out or report_folder(ref), typer.echo)
    except SweeperError as exc:
        _fail(exc)
    typer.echo(f"report: {page}")


@app.command()
def study(
    sweeps: Annotated[list[str], typer.Argument(help="sweep ids (under the storage folder) or sweep folders")],
    out: Annotated[
        Path,
        typer.Option(
            help="study folder, new or empty or made by an earlier study (only its files are replaced and logged)"
        ),
    ],
    by: Annotated[
        str, typer.Option("--by", help="score to compare by (transfer, UDR selection, figures)")
    ] = DEFAULT_SCORE,
    mode: ModeOpt = "max",
    storage: StorageOpt = Path(DEFAULT_STORAGE),
    tracking_uri: Annotated[
        Optional[str],
        typer.Option("--tracking-uri", help="find every sweep by id in this MLflow store, and log the study there"),
    ] = None,
    udr: UdrOpt = True,
) -> None:
    """Study several sweeps together: objective vs hyperparameter vs seed, metric agreement, unsupervised
    selection, transfer; one table, one HTML page, logged as a study run."""
    from sweeper.analyse.results import locate_sweep
    from sweeper.analyse.selection import UnknownScore
    from sweeper.analyse.study_report import analyse, write_study
    from sweeper.analyse.study_table import read_models, study_scores
    from sweeper.errors import ConfigError
    from sweeper.tracking.client import connect

    _no_credentials(tracking_uri, "--tracking-uri")
    clients: dict[str, object] = {}

    def client_for(uri: str):  # noqa: ANN202 - an MlflowClient, imported lazily
        if uri not in clients:
            clients[uri] = connect(uri)
        return clients[uri]

    try:
        twice = sorted({s for s in sweeps if sweeps.count(s) > 1})
        if twice:
            raise ConfigError(f"sweep {twice[0]!r} is named more than once")
        refs = [locate_sweep(sweep, storage, tracking_uri) for sweep in sweeps]
        ids = [ref.sweep_id for ref in refs]
        models = read_models(refs, client_for, udr=udr, echo=typer.echo)
        scores, partial = study_scores(models.table, ids)
        if by not in scores:
            raise UnknownScore(f"{by!r} is not a score every sweep reported; scores in common: {', '.join(scores)}")
        if partial:
            models.problems.append(f"reported by some sweeps only, so left out of the analyses: {', '.join(partial)}")
        found = analyse(models.table, scores, by, maximize=mode == "max")
        page = write_study(client_for(tracking_uri or refs[0].tracking_uri), models, found, ids, out, typer.echo)
    except SweeperError as exc:
        _fail(exc)
    typer.echo(f"study: {page}")


@app.command()
def export(
    sweep: SweepArg,
    to: Annotated[Path, typer.Option("--to", help="folder to create: one subfolder per exported model")],
    by: ByOpt = DEFAULT_SCORE,
    mode: ModeOpt = "max",
    median_seed: Annotated[
        bool, typer.Option("--median-seed", help="the best configuration's median seed, not the luckiest seed")
    ] = False,
    picks: Annotated[
        Optional[str],
        typer.Option(help="export the runs `sweeper select` tagged: 'all' or one kind (tradeoff, ...)"),
    ] = None,
    run: Annotated[Optional[list[str]], typer.Option("--run", help="export this run id (repeatable)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace the target folder if it exists")] = False,
    register: Annotated[
        Optional[str], typer.Option(help="register the model in the MLflow Model Registry under this name")
    ] = None,
    alias: Annotated[Optional[str], typer.Option(help="alias of the registered version, e.g. champion")] = None,
    storage: StorageOpt = Path(DEFAULT_STORAGE),
    tracking_uri: TrackingOpt = None,
) -> None:
    """Export the best checkpoints: safetensors weights, config, metrics, model card and a sha256 manifest."""
    from sweeper.analyse.results import locate_sweep
    from sweeper.export.choose import Choice
    from sweeper.export.package import export_sweep, print_export
    from sweeper.tracking.client import connect

    _no_credentials(tracking_uri, "--tracking-uri")
    given = [name for name, on in (("--median-seed", median_seed), ("--picks", picks), ("--run", run)) if on]
    if len(given) > 1:
        _fail(ConfigError(f"{' and '.join(given)}: give one of --median-seed, --picks and --run, not several"))
    choice = Choice(by, mode == "max", median_seed, picks, tuple(run or ()))
    try:
        ref = locate_sweep(sweep, storage, tracking_uri)
        result = export_sweep(
            connect(ref.tracking_uri), ref, to, choice, force, register, alias, typer.echo, storage=storage
        )
    except SweeperError as exc:
        _fail(exc)
    print_export(result, typer.echo)
