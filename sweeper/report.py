"""`sweeper report`: the whole sweep on one page, next to its figures and its results table.

After a selection (sweeper.picking), the report writes the Parquet table,
the figures and one self-contained HTML page into a folder and logs that
folder to the sweep's parent run under `report/`. Whatever cannot be made (a
failed trial, a missing checkpoint) is listed at the top of the page instead
of stopping the report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from mlflow.tracking import MlflowClient

from sweeper import plots, selection
from sweeper.picking import Selection
from sweeper.report_html import Section, render
from sweeper.results import PICK_ROLE_TAG, SweepRef, write_parquet
from sweeper.selection import Picks

REPORT_ARTIFACTS = "report"
RECONSTRUCTED = 8  # observations shown with their reconstructions


def report_folder(ref: SweepRef) -> Path:
    """The default report folder: inside the sweep folder, else ./<sweep id>-report."""
    return ref.folder / "report" if ref.folder is not None else Path(f"{ref.sweep_id}-report")


# -- the report ---------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", text)


def model_title(p: selection.Pick, roles: str) -> str:
    return f"β={p.beta:g} C={p.capacity:g} seed={p.seed} ({roles})"


def write_report(
    client: MlflowClient, chosen: Selection, out: Path, echo: Callable[[str], None] = print
) -> dict[str, Path]:
    """Write the Parquet table, every figure and report.html into `out`, and log `out` to the parent run.

    Returns the written files by name.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("model_*.png"):  # the figures of models an earlier report picked
        stale.unlink()
    table, picks = chosen.table, chosen.picks
    problems = list(chosen.problems)
    done = selection.finished(table)
    scores = selection.score_names(done)
    disent = [s for s in scores if s.startswith(selection.SCORE_PREFIX)]
    files: dict[str, Path] = {"results": write_parquet(table, out / "results.parquet")}

    echo("figures: rate-distortion, scores, correlations")
    files["rate_distortion"] = plots.rate_distortion(table, out / "rate_distortion.png")
    files["scores"] = plots.scores_vs_beta(table, disent + [n for n in scores if n == selection.UDR], out / "scores_vs_beta.png")
    correlations = selection.rank_correlations(done, scores)
    files["correlations"] = plots.correlation_heatmap(scores, correlations, out / "score_correlations.png")
    files["kl"] = _kl_heatmap(done, picks, out / "kl_per_latent.png")
    model_figures = _model_figures(done, picks, out, problems, echo)
    files.update(model_figures)

    sections = _sections(chosen, done, scores, correlations, files, model_figures)
    html = render(
        title=f"Sweep {chosen.ref.sweep_id}",
        facts=_facts(chosen, table),
        problems=problems,
        sections=sections,
    )
    files["html"] = out / "report.html"
    files["html"].write_text(html, encoding="utf-8")
    echo(f"logging {out} to the parent run {chosen.ref.parent_run_id} under {REPORT_ARTIFACTS}/")
    client.log_artifacts(chosen.ref.parent_run_id, str(out), artifact_path=REPORT_ARTIFACTS)
    return files


def _kl_heatmap(done: pa.Table, picks: Picks, path: Path) -> Path:
    """KL per latent of every picked run, from the final `kl/<i>` metrics each trial reported."""
    latents = sorted(
        (int(n.split("/")[1]) for n in done.column_names if re.fullmatch(r"kl/\d+", n)),
    )
    rows = {r["run_id"]: r for r in done.select(["run_id"] + [f"kl/{i}" for i in latents]).to_pylist()}
    roles = picks.tags()
    first = {p.run_id: p for p in reversed(picks.items)}
    run_ids = sorted(picks.run_ids(), key=lambda run: (first[run].beta, first[run].capacity, first[run].seed))
    kl = np.array([[rows[run][f"kl/{i}"] for i in latents] for run in run_ids], dtype=np.float64)
    labels = [model_title(first[run], roles[run][PICK_ROLE_TAG]) for run in run_ids]
    return plots.kl_per_latent(kl, labels, path)


def _model_figures(
    done: pa.Table, picks: Picks, out: Path, problems: list[str], echo: Callable[[str], None]
) -> dict[str, Path]:
    """Traversals and reconstructions of every picked model, decoded from its checkpoint."""
    from sweeper.models import MissingCheckpoint, encode, load_model, observation_set

    images = observation_set()
    checkpoints = dict(zip(done["run_id"].to_pylist(), done["checkpoint"].to_pylist()))
    roles = picks.tags()
    first = {p.run_id: p for p in reversed(picks.items)}
    figures: dict[str, Path] = {}
    for run in picks.run_ids():
        p, title = first[run], model_title(first[run], roles[run][PICK_ROLE_TAG])
        try:
            model = load_model(checkpoints[run])
        except MissingCheckpoint as exc:
            problems.append(f"figures of {title} (run {run}): {exc}")
            continue
        echo(f"figures: {title}")
        codes, kl = encode(model, images)
        name = _slug(f"beta={p.beta:g}_C={p.capacity:g}_seed={p.seed}_{run[:6]}")
        figures[f"traversal:{run}"] = plots.traversal(model, codes[0], kl, title, out / f"model_{name}_traversal.png")
        figures[f"reconstruction:{run}"] = plots.reconstructions(
            model, images[:RECONSTRUCTED, 0].numpy(), codes[:RECONSTRUCTED], title, out / f"model_{name}_reconstruction.png"
        )
    return figures


def _facts(chosen: Selection, table: pa.Table) -> list[tuple[str, str]]:
    statuses: dict[str, int] = {}
    for status in table["status"].to_pylist():
        statuses[status] = statuses.get(status, 0) + 1
    ref = chosen.ref
    return [
        ("sweep", ref.sweep_id),
        ("trials", ", ".join(f"{n} {s.lower()}" for s, n in sorted(statuses.items()))),
        ("picked by", f"{chosen.picks.by} ({'higher' if chosen.maximize else 'lower'} is better)"),
        ("tracking", ref.tracking_uri),
        ("experiment / parent run", f"{ref.experiment_id} / {ref.parent_run_id}"),
        ("made", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]


def _sections(
    chosen: Selection,
    done: pa.Table,
    scores: list[str],
    correlations: np.ndarray,
    files: dict[str, Path],
    model_figures: dict[str, Path],
) -> list[Section]:
    picks = chosen.picks
    stats_metrics = [n for n in selection.metric_names(done) if not re.fullmatch(r"kl/\d+", n)]
    udr_section = Section(
        "Unsupervised ranking (UDR)",
        "Each trial's UDR among the other seeds of its configuration, computed from the checkpoints "
        "without ground-truth factors; its rank correlation with the supervised scores says how far "
        "it can stand in for them on this sweep.",
        tables=[("Top UDR seed of each configuration", selection.picks_table(picks, selection.UDR_RANKING))],
    )
    if selection.UDR in scores:
        row = scores.index(selection.UDR)
        udr_section.tables.append(
            (
                "Spearman correlation of UDR with each score",
                pa.table({"score": [s for s in scores if s != selection.UDR], "spearman": [float(correlations[row, i]) for i, s in enumerate(scores) if s != selection.UDR]}),
            )
        )
    else:
        udr_section.text += " UDR was not computed for this report."
    return [
        Section(
            "β trade-off",
            "Each configuration's median-seed model by the chosen score; configurations on the Pareto "
            "front of median reconstruction against median score are marked.",
            tables=[("Configurations", selection.configuration_summary(done, picks))],
            images=[files["rate_distortion"], files["scores"]],
        ),
        Section(
            "Seed sensitivity",
            "Best, median and worst seed of each configuration by the chosen score; the share of each "
            "score's variance explained by the configuration (one-way ANOVA η²) and left to the seed; "
            "and how the scores rank the trials alike.",
            tables=[
                ("Seeds of each configuration", selection.seed_table(picks)),
                ("Variance explained by the configuration vs left to the seed", selection.variance_shares(done, scores)),
            ],
            images=[files["correlations"]],
        ),
        udr_section,
        Section(
            "Picked models",
            "KL per latent of every picked model, then for each one the latents traversed from one "
            "observation's code and a row of reconstructions, decoded from its checkpoint.",
            tables=[("All picks (as tagged on the runs)", selection.picks_table(picks))],
            images=[files["kl"], *model_figures.values()],
        ),
        Section(
            "Seed statistics",
            "Every metric of every configuration over its seeds (std with ddof 1); the full table of "
            "trials is results.parquet.",
            tables=[("Per configuration and metric", selection.seed_statistics(done, stats_metrics))],
            collapsed=True,
        ),
    ]
