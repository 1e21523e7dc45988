"""`sweeper study`: the models of several sweeps as one study, its analyses on one page, logged as a run.

The sweeps are read (`sweeper.analyse.study_table`) and analysed
(`sweeper.analyse.study_stats`) before anything is written, so a wrong input
leaves no file and no run. Then the folder (`--out`, the study's own, as a
report's: `sweeper.analyse.folder`) gets `study.parquet`, the figures and
`study.html`, and a run of its own in the experiment `sweeper-studies` gets
those files, the sweeps' ids and the score it was made by. A run that cannot
be logged in full is deleted: the folder is then the only result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from sweeper.analyse import plots, study_plots, study_stats
from sweeper.analyse.folder import claim_folder, write_marker
from sweeper.analyse.report_html import Section, render
from sweeper.analyse.results import write_parquet
from sweeper.analyse.selection import UDR, column
from sweeper.analyse.study_table import StudyModels
from sweeper.errors import EnvironmentProblem
from sweeper.tags import ROLE_STUDY, ROLE_TAG, STUDY_ARTIFACTS, STUDY_EXPERIMENT, STUDY_SWEEPS_TAG

STUDY_MARKER = ".sweeper-study.json"  # in a study folder: the names of the files the study wrote
REPLICATES = 1000  # bootstrap resamples of the variance shares
BOOTSTRAP_SEED = 0  # the same models give the same intervals
MAX_TAG_CHARS = 5000  # MLflow's limit on a tag's value
DOWNSTREAM = "disent/downstream_"


@dataclass
class StudyAnalyses:
    """Every analysis of the study, as tables (and the Spearman matrices, per dataset)."""

    scores: list[str]
    by: str
    maximize: bool
    models: pa.Table
    shares: pa.Table
    agreement: dict[str, np.ndarray]
    unsupervised: pa.Table
    udr_selection: pa.Table | None
    dataset_transfer: pa.Table
    seed_transfer: pa.Table
    downstream: pa.Table | None


def analyse(
    table: pa.Table, scores: Sequence[str], by: str, maximize: bool = True, replicates: int = REPLICATES
) -> StudyAnalyses:
    """Every analysis of `sweeper.analyse.study_stats` over the study table, by the score `by`."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    scores = list(scores)
    return StudyAnalyses(
        scores=scores,
        by=by,
        maximize=maximize,
        models=models_summary(table),
        shares=study_stats.variance_shares(table, scores, rng, replicates),
        agreement=study_stats.score_agreement(table, scores),
        unsupervised=study_stats.unsupervised_correlations(table, scores),
        udr_selection=study_stats.selection_by(table, UDR, by, maximize) if UDR in scores and by != UDR else None,
        dataset_transfer=study_stats.dataset_transfer(table, by, maximize),
        seed_transfer=study_stats.seed_transfer(table, by, maximize),
        downstream=downstream_summary(table, scores),
    )


def models_summary(table: pa.Table) -> pa.Table:
    """Per dataset and objective: the models, their configurations and seeds, and the sweeps they came from."""
    grouped = table.group_by(["dataset", "objective"]).aggregate(
        [("run_id", "count"), ("seed", "count_distinct"), ("sweep", "distinct")]
    )
    configurations: dict[tuple[str, str], int] = {}
    for dataset in study_stats.datasets(table):
        found = study_stats.find_configurations(study_stats.of_dataset(table, dataset))
        for objective in found.objective_of:
            configurations[dataset, objective] = configurations.get((dataset, objective), 0) + 1
    rows = [
        {
            "dataset": row["dataset"],
            "objective": row["objective"],
            "models": row["run_id_count"],
            "configurations": configurations[row["dataset"], row["objective"]],
            "seeds": row["seed_count_distinct"],
            "sweeps": ", ".join(sorted(row["sweep_distinct"])),
        }
        for row in grouped.to_pylist()
    ]
    return pa.Table.from_pylist(sorted(rows, key=lambda r: (r["dataset"], r["objective"])))


def downstream_summary(table: pa.Table, scores: Sequence[str]) -> pa.Table | None:
    """Per dataset and objective, the median over models of each downstream score; None without them."""
    names = [s for s in scores if s.startswith(DOWNSTREAM) and "_min_" not in s]
    if not names:
        return None
    rows = []
    for dataset in study_stats.datasets(table):
        part = study_stats.of_dataset(table, dataset)
        objectives = np.array(part["objective"].to_pylist(), dtype=object)
        for objective in sorted(set(objectives)):
            row = {"dataset": dataset, "objective": objective}
            for name in names:
                values = column(part, name)[objectives == objective]
                values = values[np.isfinite(values)]
                row[name.removeprefix(DOWNSTREAM)] = float(np.median(values)) if values.size else None
            rows.append(row)
    return pa.Table.from_pylist(rows)


def write_study(
    client: MlflowClient,
    models: StudyModels,
    found: StudyAnalyses,
    sweeps: Sequence[str],
    out: Path,
    echo: Callable[[str], None] = print,
) -> Path:
    """Write study.parquet, the figures and study.html into `out`, log them as a study run; the page's path."""
    written = write_folder(models, found, sweeps, out, echo)
    _log_run(client, models.table, found, sweeps, written, echo)
    return written[-1]


def write_folder(
    models: StudyModels, found: StudyAnalyses, sweeps: Sequence[str], out: Path, echo: Callable[[str], None] = print
) -> list[Path]:
    """Write study.parquet, the figures and study.html into `out` (the study's own); the files, the page last."""
    claim_folder(out, STUDY_MARKER, "study")
    table = models.table
    write_parquet(table, out / "study.parquet")
    echo("figures: variance shares, score by objective and hyperparameter, rank correlations")
    figures = {
        "shares": study_plots.variance_shares(found.shares, out / "variance_shares.png"),
        "objectives": study_plots.score_by_objective(table, found.by, out / "score_by_objective.png"),
        "hyperparameters": study_plots.score_vs_hyperparameter(table, found.by, out / "score_vs_hyperparameter.png"),
    }
    agreement = [
        plots.correlation_heatmap(
            found.scores, matrix, out / f"score_correlations_{index}.png", f"Rank correlation between scores: {dataset}"
        )
        for index, (dataset, matrix) in enumerate(found.agreement.items())
    ]
    facts, sections = _facts(table, found, sweeps), _sections(found, figures, agreement)
    page = render("Study across sweeps", facts, models.problems, sections)
    path = out / "study.html"
    path.write_text(page, encoding="utf-8")
    written = [out / "study.parquet", *figures.values(), *agreement, path]
    write_marker(out, STUDY_MARKER, written)
    return written


def _log_run(
    client: MlflowClient,
    table: pa.Table,
    found: StudyAnalyses,
    sweeps: Sequence[str],
    written: list[Path],
    echo: Callable[[str], None],
) -> None:
    """The study's run: the files under `study/`, the sweeps as a tag; deleted again if any write fails."""
    from sweeper.tracking.client import ensure_experiment

    run_id = None
    try:
        experiment = ensure_experiment(client, STUDY_EXPERIMENT)
        tags = {ROLE_TAG: ROLE_STUDY, STUDY_SWEEPS_TAG: ",".join(sweeps)[:MAX_TAG_CHARS]}
        run_id = client.create_run(experiment, run_name=f"study of {len(sweeps)} sweeps", tags=tags).info.run_id
        echo(f"logging {len(written)} files to the study run {run_id} (experiment {STUDY_EXPERIMENT})")
        now = int(time.time() * 1000)
        counts = {"models": table.num_rows, "datasets": len(study_stats.datasets(table)), "sweeps": len(sweeps)}
        client.log_batch(
            run_id,
            metrics=[Metric(name, float(value), now, 0) for name, value in counts.items()],
            params=[Param("by", found.by), Param("mode", "max" if found.maximize else "min")],
        )
        for file in written:
            client.log_artifact(run_id, str(file), artifact_path=STUDY_ARTIFACTS)
        client.set_terminated(run_id, "FINISHED")
    except Exception as exc:  # noqa: BLE001 - any tracking failure: the folder is written, the run is not
        if run_id is not None:
            try:
                client.delete_run(run_id)
            except Exception:  # noqa: BLE001, S110 - the store is failing already; the error below says so
                pass
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EnvironmentProblem(f"study written to {written[-1]}, but not logged to MLflow: {reason}") from exc


def _facts(table: pa.Table, found: StudyAnalyses, sweeps: Sequence[str]) -> list[tuple[str, str]]:
    return [
        ("sweeps", ", ".join(sweeps)),
        ("models", f"{table.num_rows} finished, on {', '.join(study_stats.datasets(table))}"),
        ("objectives", ", ".join(sorted(set(table["objective"].to_pylist())))),
        ("compared by", f"{found.by} ({'higher' if found.maximize else 'lower'} is better)"),
        ("scores compared", str(len(found.scores))),
        ("made", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]


def _sections(found: StudyAnalyses, figures: dict[str, Path], agreement: list[Path]) -> list[Section]:
    by = found.by
    selection = Section(
        "Unsupervised model selection",
        "Spearman correlation of each unsupervised score (and UDR) with each supervised score, over the models "
        "of each dataset and objective: how far a score that needs no ground truth ranks models as one that "
        "does. Then, per dataset and objective, the score by which the study is compared got by taking each "
        "configuration's model with the highest UDR, next to a random seed's (the configuration's mean) and the "
        "best seed's (the oracle), averaged over the configurations.",
        tables=[("Unsupervised against supervised scores", found.unsupervised)],
    )
    if found.udr_selection is not None:
        caption = f"{by} of the model chosen by UDR, of a random seed and of the best"
        selection.tables.append((caption, found.udr_selection))
    else:
        selection.text += " No UDR was compared in this study (no model had one, or it is the score compared by)."
    transfer = Section(
        "Transfer",
        f"For each ordered pair of datasets, the configuration best on the first by its median {by} over seeds, "
        "and the probability that a model of it beats a model of a random other configuration on the second "
        "(ties count half): 1 is a choice that always carries over, 0.5 one no better than chance. Then, on "
        "each dataset, the same across seeds: the configuration best on one seed against the others on each "
        "other seed.",
        tables=[
            ("Across datasets", found.dataset_transfer),
            ("Across seeds", found.seed_transfer),
        ],
    )
    if found.dataset_transfer.num_rows == 0:
        transfer.text += " Only one dataset (or no configuration in common): nothing to transfer across datasets."
    sections = [
        Section(
            "Models",
            "The finished models of the study by dataset and objective; study.parquet holds every one with its "
            "sweep, hyperparameters, seed and scores.",
            tables=[("Models", found.models)],
        ),
        Section(
            "Which matters more: objective, hyperparameter or seed",
            "Each score's sums of squares over the models of a dataset, split into the objective's share "
            "(between objectives), the hyperparameter's within the objective (between its configurations) and "
            "the seed's (left within a configuration), with 95% bootstrap intervals over the seeds. Then "
            f"{by} by objective, and against each objective's hyperparameter with every seed as a point.",
            tables=[("Variance shares", found.shares)],
            images=[figures["shares"], figures["objectives"], figures["hyperparameters"]],
        ),
        Section(
            "Metric agreement",
            "Spearman rank correlation between every pair of scores over the models of each dataset.",
            images=agreement,
        ),
        selection,
        transfer,
    ]
    if found.downstream is not None:
        sections.append(
            Section(
                "Downstream tasks",
                "Median over the models of each dataset and objective of the downstream scores: the test "
                "accuracy of logistic regression (logreg) and boosted trees (gbt) trained on 10 to 10,000 codes, "
                "averaged over the factors, and the sample efficiency (accuracy at 100 over accuracy at 10,000).",
                tables=[("Downstream accuracy", found.downstream)],
            )
        )
    return sections
