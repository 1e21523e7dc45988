"""The report's figures, one function per figure, each saving a PNG and returning its path.

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg
canvas, never through pyplot: no display, no global figure registry to leak
memory across the dozens of figures of a large sweep, and safe to call from
any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from sweeper.analyse.checkpoints import decode
from sweeper.analyse.selection import TradeOff, column, configurations, optional_column, rows_of, tradeoffs
from trainables.model import BetaVAE
from trainables.trial import Configuration

TRAVERSAL_VALUES = np.linspace(-2.5, 2.5, 9)  # prior standard deviations either side of the code
DPI = 100
SIDE_BY_SIDE = 12  # configurations a score panel may hold beside another; more get a row of their own
MAX_INCHES = 40  # the tallest figure, whatever the number of picked models
MARKERS = ("o", "s", "^", "D", "v", "P")  # one per objective, the study's six


def short(metric: str) -> str:
    return metric.removeprefix("disent/")


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def rate_distortion(table: pa.Table, path: Path) -> Path:
    """KL (rate) against reconstruction (distortion) of every trial, each seed a point.

    With few configurations each has its own colour, so the trade-off reads along the legend (a marker
    per objective); with more, one colour per objective, or the legend would hide the points.
    """
    keys, labels = configurations(table)
    kl, recon = column(table, "kl"), column(table, "recon")
    groups = tradeoffs(keys)
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    if len(keys) <= SIDE_BY_SIDE:
        for marker, group in zip(MARKERS * len(groups), groups):
            for configuration in group.configurations:
                members = rows_of(keys, labels, [configuration])
                colour = f"C{keys.index(configuration) % 10}"
                ax.scatter(
                    kl[members], recon[members], color=colour, marker=marker, label=configuration.label(), alpha=0.8
                )
        ax.legend(title="configuration (each seed a point)", fontsize=8, title_fontsize=8)
    else:
        for colour, group in enumerate(groups):
            members = rows_of(keys, labels, group.configurations)
            ax.scatter(kl[members], recon[members], color=f"C{colour % 10}", label=group.name, alpha=0.8)
        ax.legend(title="objective", fontsize=8)
    ax.set(xlabel="KL (nats)", ylabel="reconstruction (nats per image)", title="Rate–distortion")
    ax.grid(alpha=0.3)
    return save(fig, path)


def tradeoff(table: pa.Table, score: str, path: Path) -> Path:
    """Each objective's trade-off along its swept weight: the score (left) and the reconstruction (right)
    of every seed as a point, their medians joined by a line."""
    keys, labels = configurations(table)
    groups = tradeoffs(keys)
    fig = Figure(figsize=(9, 3 * max(1, len(groups))), layout="constrained")
    axes = fig.subplots(max(1, len(groups)), 2, squeeze=False)
    for row, group in zip(axes, groups):
        x = np.array(group.positions())
        for ax, name in zip(row, (score, "recon")):
            values = optional_column(table, name)
            medians = []
            for position, key in zip(x, group.configurations):
                seeds = values[rows_of(keys, labels, [key]) & np.isfinite(values)]
                ax.scatter(np.full(seeds.size, position), seeds, s=14, alpha=0.6, color="C1", zorder=3)
                medians.append(np.median(seeds) if seeds.size else np.nan)
            ax.plot(x, medians, marker="o", color="C0", label="median over seeds")
            if group.swept is None:
                ax.set_xticks(x, [_tick(group, c) for c in group.configurations], rotation=30, ha="right", fontsize=7)
            elif x.min() > 0 and x.max() >= 10 * x.min():
                ax.set_xscale("log")
            ax.set(xlabel=group.axis_label(), ylabel=short(name), title=f"{group.name}: {short(name)}")
            ax.grid(alpha=0.3)
    if not groups:
        axes[0][0].set_title("No finished trial")
    return save(fig, path)


def _tick(tradeoff: TradeOff, configuration: Configuration) -> str:
    """A configuration on its objective's axis: the swept weight's value, else all its weights."""
    if tradeoff.swept is not None:
        return f"{configuration.weight(tradeoff.swept):g}"
    return " ".join(f"{name}={value:g}" for name, value in configuration.weights)


def scores_by_configuration(table: pa.Table, scores: Sequence[str], path: Path) -> Path:
    """One panel per score: a box per configuration with every seed as a point on it, each objective's
    configurations together along its swept weight and named above them."""
    keys, labels = configurations(table)
    groups = tradeoffs(keys)
    order = [c for group in groups for c in group.configurations]
    ticks = [_tick(group, c) for group in groups for c in group.configurations]
    cols = max(1, min(3, len(scores))) if len(order) <= SIDE_BY_SIDE else 1
    rows = max(1, -(-len(scores) // cols))
    fig = Figure(figsize=(max(4.2, 0.35 * len(order)) * cols, 3.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, score in zip(axes, scores):
        values = column(table, score)
        boxes_with_points(ax, [values[rows_of(keys, labels, [c]) & np.isfinite(values)] for c in order])
        start = 0
        for group in groups:
            end = start + len(group.configurations)
            if start:
                ax.axvline(start - 0.5, color="grey", linewidth=0.8)
            ax.text((start + end - 1) / 2, 1.01, f"{group.name} ({group.axis_label()})", fontsize=7,
                    ha="center", va="bottom", transform=ax.get_xaxis_transform())
            start = end
        wide = any(len(tick) > 4 for tick in ticks)
        ax.set_xticks(range(len(order)), ticks, fontsize=7, rotation=90 if wide else 0)
        ax.set_title(short(score), fontsize=10, pad=14)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(scores) :]:
        ax.set_visible(False)
    fig.suptitle("Scores by configuration (every seed a point)" if scores else "No trial reported a score")
    return save(fig, path)


def boxes_with_points(ax, groups: Sequence[np.ndarray], size: float = 14) -> None:
    """A box per group at 0, 1, ..., with every value on it as a point (jittered sideways, the same
    jitter on every call)."""
    jitter = np.random.default_rng(0)
    ax.boxplot(groups, positions=range(len(groups)), widths=0.5, showfliers=False)
    for i, group in enumerate(groups):
        ax.scatter(i + jitter.uniform(-0.12, 0.12, group.size), group, s=size, alpha=0.7, color="C1", zorder=3)


def kl_per_latent(kl: np.ndarray, row_labels: Sequence[str], path: Path) -> Path:
    """Heat map of each picked model's KL per latent (rows: models, columns: latents)."""
    fig = Figure(figsize=(1.2 + 0.55 * kl.shape[1], min(1.2 + 0.38 * kl.shape[0], MAX_INCHES)))
    ax = fig.subplots()
    image = ax.imshow(kl, aspect="auto", cmap="magma")
    fig.colorbar(image, ax=ax, label="KL (nats)")
    ax.set_xticks(range(kl.shape[1]), [str(i) for i in range(kl.shape[1])])
    ax.set_yticks(range(kl.shape[0]), row_labels, fontsize=8)
    ax.set(xlabel="latent", title="KL per latent of the picked models")
    return save(fig, path)


def mosaic(images: np.ndarray, cols: int, gap: int = 2) -> np.ndarray:
    """Images (n, h, w) tiled row by row into one array, `gap` grey pixels between them.

    One image per figure instead of one axes per tile: a traversal grid of a
    hundred tiles renders in a fraction of the time.
    """
    n, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), 0.5)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    return out


def _tile_centres(count: int, size: int, gap: int = 2) -> np.ndarray:
    return np.arange(count) * (size + gap) + (size - 1) / 2


def traversal(model: BetaVAE, code: np.ndarray, kl: np.ndarray, title: str, path: Path) -> Path:
    """Each latent swept over TRAVERSAL_VALUES from one observation's code, the others held; latents
    in decreasing KL, so the ones in use come first."""
    order = np.argsort(-np.nan_to_num(kl, nan=-1.0), kind="stable")
    cols = len(TRAVERSAL_VALUES)
    codes = np.repeat(code[None, :], len(order) * cols, axis=0)
    for r, latent in enumerate(order):
        codes[r * cols : (r + 1) * cols, latent] = TRAVERSAL_VALUES
    images = decode(model, codes)
    size = images.shape[1]
    fig = Figure(figsize=(0.6 * cols + 1.2, 0.6 * len(order) + 0.8))
    ax = fig.subplots()
    ax.imshow(mosaic(images, cols), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(_tile_centres(cols, size), [f"{v:+.1f}" for v in TRAVERSAL_VALUES], fontsize=7)
    ax.set_yticks(_tile_centres(len(order), size), [f"z{d}  KL {kl[d]:.2f}" for d in order], fontsize=7)
    ax.set_title(f"{title}: latent traversals", fontsize=9)
    return save(fig, path)


def model_traversal(model: BetaVAE, code: np.ndarray, kl_fallback: np.ndarray, metrics: dict, title: str, path: Path) -> Path:
    """`traversal` with the latents ordered by the KL the trial reported (`kl/<d>` in `metrics`), or by
    `kl_fallback` (the KL of the encoded observations) for a latent it did not report."""
    kl = np.array(
        [metrics[f"kl/{d}"] if metrics.get(f"kl/{d}") is not None else kl_fallback[d] for d in range(model.latent_dim)],
        dtype=np.float64,
    )
    return traversal(model, code, kl, title, path)


def reconstructions(model: BetaVAE, images: np.ndarray, codes: np.ndarray, title: str, path: Path) -> Path:
    """Observations (top row) and their reconstructions from the posterior mean (bottom row)."""
    decoded = decode(model, codes)
    fig = Figure(figsize=(0.8 * len(images) + 1, 2.2))
    ax = fig.subplots()
    ax.imshow(mosaic(np.concatenate([images, decoded]), len(images)), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks(_tile_centres(2, images.shape[1]), ["input", "recon"], fontsize=8)
    ax.set_title(f"{title}: reconstructions", fontsize=9)
    return save(fig, path)


def correlation_heatmap(
    names: Sequence[str],
    matrix: np.ndarray,
    path: Path,
    title: str = "Rank correlation between scores (over all finished trials)",
) -> Path:
    """Spearman rank correlation between the scores; blank where undefined."""
    size = 1.5 + 0.5 * len(names)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=-1, vmax=1, cmap="RdBu_r")
    fig.colorbar(image, ax=ax, label="Spearman ρ")
    labels = [short(n) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), labels, fontsize=8)
    if len(names) <= 16:
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(title)
    return save(fig, path)
