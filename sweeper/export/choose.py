"""Which models of a sweep to export: explicit runs, the selector's picks, the best trial by a score,
or the median seed of the best configuration (the honest choice when seeds differ as much as weights)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sweeper.analyse import selection
from sweeper.analyse.results import row_label
from sweeper.errors import ConfigError, EnvironmentProblem
from sweeper.tags import DEFAULT_SCORE

ALL_PICKS = "all"


@dataclass(frozen=True)
class Choice:
    """Which models to export: explicit runs, the selector's picks, or the best by a score."""

    by: str = DEFAULT_SCORE
    maximize: bool = True
    median_seed: bool = False  # the best configuration's median seed instead of the best trial
    picks: str | None = None  # "all" or a pick kind (tradeoff, seed_sensitivity, udr_ranking)
    run_ids: tuple[str, ...] = ()


def choose(table: pa.Table, choice: Choice) -> list[tuple[dict, str]]:
    """The rows to export, each with why it was chosen; clear errors for a choice that finds nothing."""
    done = selection.finished(table)
    if choice.run_ids:
        rows = {row["run_id"]: row for row in table.to_pylist()}
        unknown = [r for r in choice.run_ids if r not in rows]
        if unknown:
            raise ConfigError(f"no trial run {', '.join(unknown)} in this sweep")
        unfinished = [
            f"{row_label(rows[r])} is {rows[r]['status']}"
            for r in choice.run_ids
            if rows[r]["status"] != selection.FINISHED
        ]
        if unfinished:
            raise ConfigError("only finished trials are exported: " + "; ".join(unfinished))
        return [(rows[r], "run id") for r in dict.fromkeys(choice.run_ids)]
    if done.num_rows == 0:
        raise EnvironmentProblem("none of the sweep's trials has finished; nothing to export")
    if choice.picks is not None:
        tagged = [row for row in done.to_pylist() if row["selected"]]
        if choice.picks != ALL_PICKS:
            tagged = [row for row in tagged if choice.picks in row["selected"].split(",")]
        if not tagged:
            what = "picked" if choice.picks == ALL_PICKS else f"picked for {choice.picks}"
            raise EnvironmentProblem(f"no finished trial is tagged as {what}; run `sweeper select` first")
        return [(row, f"pick: {row['selected']} ({row['role']})") for row in tagged]
    selection.require_score(done, choice.by)
    scores, seeds = selection.column(done, choice.by), selection.column(done, "seed")
    if not choice.median_seed:
        signed = scores if choice.maximize else -scores
        index = selection.best_index(signed, seeds)
        return [(done.slice(index, 1).to_pylist()[0], f"best trial by {choice.by}")]
    keys, labels = selection.configurations(done)
    medians = np.array([selection.nan_median(scores[labels == i]) for i in range(len(keys))])
    best_config = selection.best_index(medians if choice.maximize else -medians, np.arange(len(keys)))
    rows = np.flatnonzero(labels == best_config)
    index = rows[selection.median_index(scores[rows], seeds[rows])]
    return [(done.slice(int(index), 1).to_pylist()[0], f"median seed of the best configuration by {choice.by}")]
