"""`sweeper report`: the whole sweep on one page, next to its figures and its results table.

After a selection (sweeper.analyse.tagging), the report writes the Parquet table,
the figures and one self-contained HTML page into a folder and logs those
files to the sweep's parent run under `report/`. Whatever cannot be made (a
failed trial, a missing checkpoint) is listed at the top of the page instead
of stopping the report.

The folder is the report's own (`sweeper.analyse.folder`): created by the
report (or empty), with a marker listing what the report wrote, so a later
report replaces and logs only those files.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from mlflow.tracking import MlflowClient

from sweeper.analyse import plots, selection
from sweeper.analyse.folder import claim_folder, write_marker
from sweeper.analyse.report_html import Section, render
from sweeper.analyse.results import SweepRef, metric_names, write_parquet
from sweeper.analyse.selection import Pick, Picks, configuration_order
from sweeper.analyse.tagging import Selection, tradeoff_caption
from sweeper.errors import EnvironmentProblem
from sweeper.tags import PICK_ROLE_TAG, REPORT_ARTIFACTS

RECONSTRUCTED = 8  # observations shown with their reconstructions
SWEEP_TERMS = ("recon", "kl")  # in the rate-distortion figure; the score panels show the rest
KL_LATENT = re.compile(r"kl/\d+")
REPORT_MARKER = ".sweeper-report.json"  # in a report folder: the names of the files the report wrote


def report_folder(ref: SweepRef) -> Path:
    """The default report folder: inside the sweep folder, else ./<sweep id>-report."""
    return ref.folder / "report" if ref.folder is not None else Path(f"{ref.sweep_id}-report")


def write_report(client: MlflowClient, chosen: Selection, out: Path, echo: Callable[[str], None] = print) -> Path:
    """Write the Parquet table, every figure and report.html into `out` (a folder of the report's own),
    log those files to the parent run, and return the page's path."""
    claim_folder(out, REPORT_MARKER, "report")
    picks, problems = chosen.picks, list(chosen.problems)
    done = selection.finished(chosen.table)
    scores = selection.score_names(done)
    correlations = selection.rank_correlations(done, scores)
    write_parquet(chosen.table, out / "results.parquet")

    echo("figures: rate-distortion, trade-offs, scores, correlations, KL per latent")
    others = [s for s in scores if s not in SWEEP_TERMS]
    figures = {
        "rate_distortion": plots.rate_distortion(done, out / "rate_distortion.png"),
        "tradeoff": plots.tradeoff(done, picks.by, out / "tradeoff.png"),
        "scores": plots.scores_by_configuration(done, others, out / "scores_by_configuration.png"),
        "correlations": plots.correlation_heatmap(scores, correlations, out / "score_correlations.png"),
        "kl": _kl_heatmap(done, picks, out / "kl_per_latent.png"),
    }
    models = _model_figures(done, picks, out, problems, echo)
    page = render(
        f"Sweep {chosen.ref.sweep_id}",
        _facts(chosen),
        problems,
        _sections(picks, done, scores, correlations, figures, models),
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    written = [out / "results.parquet", *figures.values(), *models, path]
    write_marker(out, REPORT_MARKER, written)
    echo(
        f"logging {len(written)} files of {out} to the parent run {chosen.ref.parent_run_id} under {REPORT_ARTIFACTS}/"
    )
    try:
        for file in written:
            client.log_artifact(chosen.ref.parent_run_id, str(file), artifact_path=REPORT_ARTIFACTS)
    except Exception as exc:  # noqa: BLE001 - any artifact store failure: the report itself is written
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EnvironmentProblem(f"report written to {path}, but not logged to the parent run: {reason}") from exc
    return path


def _kl_names(table: pa.Table) -> list[str]:
    """The per-latent KL metrics, kl/0 .. kl/D-1."""
    return [name for name in metric_names(table) if KL_LATENT.fullmatch(name)]


def model_title(pick: Pick, roles: str) -> str:
    return f"{pick.model().label()} ({roles})"


def _kl_heatmap(done: pa.Table, picks: Picks, path: Path) -> Path:
    """KL per latent of every picked run, from the final `kl/<i>` metrics each trial reported."""
    names = _kl_names(done)
    rows = {row["run_id"]: row for row in done.select(["run_id", *names]).to_pylist()}
    roles = picks.tags()
    runs = sorted(picks.runs().items(), key=lambda item: (configuration_order(item[1].configuration), item[1].seed))
    kl = np.array([[rows[run][name] for name in names] for run, _ in runs], dtype=np.float64)
    labels = [model_title(pick, roles[run][PICK_ROLE_TAG]) for run, pick in runs]
    return plots.kl_per_latent(kl, labels, path)


def _model_figures(
    done: pa.Table, picks: Picks, out: Path, problems: list[str], echo: Callable[[str], None]
) -> list[Path]:
    """Traversals and reconstructions of every picked model, decoded from its checkpoint; latents in
    the order of the KL the trial reported. A missing checkpoint is added to `problems`."""
    from sweeper.analyse.checkpoints import (
        MissingCheckpoint,
        encode,
        load_model,
        observation_set,
    )

    images = observation_set(RECONSTRUCTED)
    rows = {row["run_id"]: row for row in done.to_pylist()}
    roles = picks.tags()
    figures = []
    for run, pick in picks.runs().items():
        title = model_title(pick, roles[run][PICK_ROLE_TAG])
        try:
            model = load_model(rows[run]["checkpoint"])
        except MissingCheckpoint as exc:
            problems.append(f"figures of {title} (run {run}): {exc}")
            continue
        echo(f"figures: {title}")
        codes, kl = encode(model, images)
        # The run id too: two Optuna configurations may print alike.
        stem = f"model_{pick.model().file_stem()}_{run[:6]}"
        figures.append(plots.model_traversal(model, codes[0], kl, rows[run], title, out / f"{stem}_traversal.png"))
        figures.append(
            plots.reconstructions(model, images[:, 0].numpy(), codes, title, out / f"{stem}_reconstruction.png")
        )
    return figures


def _facts(chosen: Selection) -> list[tuple[str, str]]:
    statuses = Counter(chosen.table["status"].to_pylist())
    ref, picks = chosen.ref, chosen.picks
    return [
        ("sweep", ref.sweep_id),
        ("trials", ", ".join(f"{n} {status.lower()}" for status, n in sorted(statuses.items()))),
        ("picked by", f"{picks.by} ({'higher' if picks.maximize else 'lower'} is better)"),
        ("tracking", ref.tracking_uri),
        ("experiment / parent run", f"{ref.experiment_id} / {ref.parent_run_id}"),
        ("made", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]


def _pick_rows(picks: Picks, kind: str) -> pa.Table:
    return selection.picks_table(picks, kind).drop_columns(["kind", "role"])


def _udr_correlations(scores: list[str], correlations: np.ndarray) -> pa.Table:
    """Spearman correlation of UDR with every other score, from the score correlation matrix."""
    row = scores.index(selection.UDR)
    others = [i for i, name in enumerate(scores) if name != selection.UDR]
    return pa.table({"score": [scores[i] for i in others], "spearman": [float(correlations[row, i]) for i in others]})


def _sections(
    picks: Picks,
    done: pa.Table,
    scores: list[str],
    correlations: np.ndarray,
    figures: dict[str, Path],
    models: list[Path],
) -> list[Section]:
    udr = Section(
        "Unsupervised ranking (UDR)",
        "Each trial's UDR among the other seeds of its configuration, computed from the checkpoints without "
        "ground-truth factors; its rank correlation with the supervised scores says how far it can stand in "
        "for them on this sweep.",
        tables=[("Top UDR seed of each configuration", _pick_rows(picks, selection.UDR_RANKING))],
    )
    if selection.UDR in scores:
        udr.tables.append(("Spearman correlation of UDR with each score", _udr_correlations(scores, correlations)))
    else:
        udr.text += " No trial has a UDR in this report."
    kl_names = set(_kl_names(done))
    tradeoffs = selection.tradeoff_tables(done, picks)
    return [
        Section(
            "Trade-off of each objective",
            "Each objective's configurations along the weight the sweep varies for it, each by its median-seed "
            "model under the chosen score; the pareto column marks the configurations on the objective's own "
            "Pareto front of median reconstruction against median score."
            + (
                " With several objectives, pareto_overall marks those on the front of all configurations."
                if len(tradeoffs) > 1
                else ""
            )
            + (
                ""
                if picks.study_front is None
                else " The study_front column marks those on the Optuna study's own Pareto front of the search "
                "objectives (the seed means it was told), which the search itself aimed at."
            ),
            tables=[(tradeoff_caption(tradeoff, picks.by), table) for tradeoff, table in tradeoffs],
            images=[figures["tradeoff"], figures["rate_distortion"], figures["scores"]],
        ),
        Section(
            "Seed sensitivity",
            "Best, median and worst seed of each configuration by the chosen score; within each objective, the "
            "share of each score's variance explained by the configuration (one-way ANOVA η² over that "
            "objective's configurations) and left to the seed; and how alike the scores rank the trials.",
            tables=[
                ("Seeds of each configuration", selection.seed_table(picks)),
                (
                    "Variance within each objective: explained by the configuration vs left to the seed",
                    selection.variance_shares(done, scores),
                ),
            ],
            images=[figures["correlations"]],
        ),
        udr,
        Section(
            "Picked models",
            "KL per latent of every picked model, then for each one its latents traversed from one observation's "
            "code and a row of reconstructions, decoded from its checkpoint.",
            tables=[("All picks, as tagged on the runs", selection.picks_table(picks))],
            images=[figures["kl"], *models],
        ),
        Section(
            "Seed statistics",
            "Every metric of every configuration over its seeds (std with ddof 1); the table of every trial is "
            "results.parquet.",
            tables=[
                (
                    "Per configuration and metric",
                    selection.seed_statistics(done, [n for n in metric_names(done) if n not in kl_names]),
                )
            ],
            collapsed=True,
        ),
    ]
