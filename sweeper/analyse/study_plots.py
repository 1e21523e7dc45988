"""The figures of a study across sweeps, each saving a PNG and returning its path (as `plots` does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from sweeper.analyse.plots import MAX_INCHES, boxes_with_points, save, short
from sweeper.analyse.selection import column
from sweeper.analyse.study_stats import OBJECTIVE, SHARES, datasets, find_configurations, of_dataset

MAX_TICKS = 8  # configuration labels along a panel before they overlap

SHARE_COLOURS = {"objective": "C0", "hyperparameter": "C2", "seed": "C7"}


MAX_COLUMNS = 4  # panels side by side before the next row


def _grid(rows: int, cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of rows x cols panels, no taller than MAX_INCHES."""
    fig = Figure(figsize=(width * cols, min(height * rows, MAX_INCHES)), layout="constrained")
    return fig, np.atleast_2d(fig.subplots(rows, cols, squeeze=False))


def _panels(count: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of `count` panels in rows of at most MAX_COLUMNS (the spare ones hidden), as a flat array."""
    cols = max(1, min(count, MAX_COLUMNS))
    fig, axes = _grid(-(-count // cols), cols, width, height)
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:count]


def score_by_objective(table: pa.Table, score: str, path: Path) -> Path:
    """One panel per dataset: a box per objective with every model as a point."""
    names = datasets(table)
    fig, axes = _panels(len(names), 4.5, 3.6)
    for ax, dataset in zip(axes, names):
        part = of_dataset(table, dataset)
        values, objectives = column(part, score), np.array(part[OBJECTIVE].to_pylist(), dtype=object)
        kinds = sorted(set(objectives))
        boxes_with_points(ax, [values[(objectives == k) & np.isfinite(values)] for k in kinds], size=8)
        ax.set_xticks(range(len(kinds)), kinds, rotation=40, ha="right", fontsize=8)
        ax.set_title(dataset, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{short(score)} by objective (every model a point)")
    return save(fig, path)


def score_vs_hyperparameter(table: pa.Table, score: str, path: Path) -> Path:
    """One panel per dataset (rows) and objective (columns): the score of every model against its
    configuration's hyperparameter values, the median of each configuration as a line."""
    names = datasets(table)
    kinds = sorted(set(table[OBJECTIVE].to_pylist()))
    fig, axes = _grid(len(names), len(kinds), 3.6, 2.8)
    for r, dataset in enumerate(names):
        part = of_dataset(table, dataset)
        configs, values = find_configurations(part), column(part, score)
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            members = [i for i, o in enumerate(configs.objective_of) if o == kind and (configs.index == i).any()]
            groups = [values[(configs.index == i) & np.isfinite(values)] for i in members]
            for x, group in enumerate(groups):
                ax.scatter(np.full(group.size, x), group, s=8, alpha=0.5, color="C1")
            medians = [np.median(g) if g.size else np.nan for g in groups]
            ax.plot(range(len(groups)), medians, color="C0", marker="_", markersize=12)
            every = -(-max(len(members), 1) // MAX_TICKS)
            labels = [
                configs.names[i].removeprefix(kind).strip() if k % every == 0 else "" for k, i in enumerate(members)
            ]
            ax.set_xticks(range(len(members)), labels, rotation=40, ha="right", fontsize=7)
            ax.set_title(f"{dataset}: {kind}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            if not members:
                ax.set_visible(False)
    fig.suptitle(f"{short(score)} against each objective's hyperparameter (every seed a point, medians joined)")
    return save(fig, path)


def variance_shares(shares: pa.Table, path: Path) -> Path:
    """One panel per dataset: each score's variance split into objective, hyperparameter and seed."""
    names = sorted(set(shares["dataset"].to_pylist()))
    most = max((sum(1 for d in shares["dataset"].to_pylist() if d == name) for name in names), default=1)
    fig, axes = _panels(len(names), 5.0, 0.8 + 0.3 * most)
    rows = shares.to_pylist()
    for ax, dataset in zip(axes, names):
        mine = [row for row in rows if row["dataset"] == dataset]
        left = np.zeros(len(mine))
        for share in SHARES:
            width = np.array([row[share] if row[share] is not None else 0.0 for row in mine])
            ax.barh(range(len(mine)), width, left=left, color=SHARE_COLOURS[share], label=share)
            left += width
        ax.set_yticks(range(len(mine)), [short(row["score"]) for row in mine], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(dataset, fontsize=10)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(SHARES), fontsize=8)
    fig.suptitle("Share of each score's variance: objective, hyperparameter within it, seed")
    return save(fig, path)
