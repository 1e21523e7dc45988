"""`sweeper select`: the picks of a sweep, written back to MLflow as tags and shown in the terminal.

The selection reads the sweep's trials from MLflow, adds each trial's UDR
from its checkpoint, picks models (sweeper.analyse.selection) and tags the picked
runs, removing the tags of an earlier selection from runs no longer picked,
so a filter on `tags.selected` always shows the current picks. Trials that did
not finish and checkpoints that are gone are listed as problems, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from sweeper.analyse import selection
from sweeper.analyse.results import SweepRef, read_results, row_label
from sweeper.analyse.selection import Picks
from sweeper.analyse.study import StudyUnreadable, read_study
from sweeper.errors import EnvironmentProblem
from sweeper.tags import PICK_ROLE_TAG, SELECTED_BY_TAG, SELECTED_TAG


@dataclass
class Selection:
    """A sweep's trials (with UDR and the new picks as columns), the picks, and what could not be used."""

    ref: SweepRef
    table: pa.Table
    picks: Picks
    problems: list[str] = field(default_factory=list)


def trial_problems(table: pa.Table) -> list[str]:
    """A line for every trial that did not finish: it takes no part in the picks."""
    lines = []
    for row in table.filter(pc.not_equal(table["status"], selection.FINISHED)).to_pylist():
        reason = f": {row['error']}" if row["error"] else ""
        lines.append(f"{row_label(row)} is {row['status']}{reason}; left out")
    return lines


def select_and_tag(client: MlflowClient, ref: SweepRef, by: str, maximize: bool = True, udr: bool = True) -> Selection:
    """Read the sweep, compute UDR, pick, and write the picks as tags on the runs."""
    table = read_results(client, ref)
    if table.num_rows == 0:
        raise EnvironmentProblem(f"sweep {ref.sweep_id} has no trial runs in {ref.tracking_uri}")
    done = selection.finished(table)
    if done.num_rows == 0:
        statuses = ", ".join(sorted(set(table["status"].to_pylist())))
        raise EnvironmentProblem(
            f"sweep {ref.sweep_id}: none of its {table.num_rows} trials has finished ({statuses}); nothing to select"
        )
    if by != selection.UDR:
        selection.require_score(done, by)  # before any checkpoint is read: a mistyped score fails at once
    problems = trial_problems(table)
    collapsed = selection.collapse_note(done)
    if collapsed is not None:
        problems.insert(0, collapsed)
    if udr:
        from sweeper.analyse.udr import sweep_udr, with_udr

        scores = sweep_udr(table)
        table = with_udr(table, scores)
        problems += [f"UDR: {line}" for line in scores.problems]
    try:
        study = read_study(ref.folder) if ref.folder else None
    except StudyUnreadable as exc:
        study = None
        problems.append(f"the Optuna study is left out: {exc}")
    picks = selection.select(table, by, maximize, study)
    write_tags(client, ref, table, picks)
    return Selection(ref, selection.with_picks(table, picks), picks, problems)


def write_tags(client: MlflowClient, ref: SweepRef, table: pa.Table, picks: Picks) -> None:
    """Tag the picked runs, untag the runs an earlier selection picked, and touch no run whose tags stand."""
    wanted = picks.tags()
    current = {
        run: {SELECTED_TAG: s, PICK_ROLE_TAG: r}
        for run, s, r in zip(table["run_id"].to_pylist(), table["selected"].to_pylist(), table["role"].to_pylist())
    }
    for run, tags in wanted.items():
        if current.get(run) != tags:
            client.log_batch(run, tags=[RunTag(key, value) for key, value in tags.items()])
    for run, tags in current.items():
        if run not in wanted:
            for key, value in tags.items():
                if value is not None:
                    client.delete_tag(run, key)
    client.set_tag(ref.parent_run_id, SELECTED_BY_TAG, f"{picks.by} ({'max' if picks.maximize else 'min'})")


def text_table(caption: str, table: pa.Table) -> str:
    """A plain-text table for the terminal: numbers to 4 significant digits, '-' where missing."""

    def text(value: object) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "-"
        if isinstance(value, bool):
            return "yes" if value else ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    rows = [[text(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(name)] + [len(row[i]) for row in rows]) for i, name in enumerate(table.column_names)]
    lines = [caption, "  ".join(n.ljust(w) for n, w in zip(table.column_names, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def tradeoff_caption(tradeoff: selection.TradeOff, by: str) -> str:
    """What a trade-off table shows: one objective's configurations along its swept weight."""
    along = f"along {tradeoff.swept}" if tradeoff.swept else "by configuration"
    return f"{tradeoff.name} trade-off {along}, by {by}: median seed of each configuration"


def print_selection(chosen: Selection, echo: Callable[[str], None] = print) -> None:
    """The picks as the terminal shows them, then what was left out."""
    picks, done = chosen.picks, selection.finished(chosen.table)
    for tradeoff, table in selection.tradeoff_tables(done, picks):
        echo(text_table(tradeoff_caption(tradeoff, picks.by), table))
        echo("")
    echo(text_table(f"seed sensitivity by {picks.by}", selection.seed_table(picks)))
    ranking = selection.picks_table(picks, selection.UDR_RANKING).drop_columns(["kind", "role"])
    if ranking.num_rows:
        echo("")
        echo(text_table("unsupervised ranking: top UDR seed of each configuration", ranking))
    for line in chosen.problems:
        echo(f"note: {line}")
    echo(f"tagged {len(picks.runs())} runs; in MLflow: tags.{SELECTED_TAG} LIKE '%{selection.TRADEOFF}%'")
