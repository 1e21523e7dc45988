"""Mutual information gap (Chen et al. 2018), discrete estimator, as disentanglement_lib defines it.

Each latent is discretised on its own into equal-width bins over its sample
range; m[d, k] is the discrete mutual information (nats) between discretised
latent d and factor k, H[k] the entropy of factor k in the sample, and
MIG = mean over k of (largest - second largest of m[:, k]) / H[k].

The discretisation and the mutual information live here because modularity
and the unsupervised scores use the same estimator.

`discrete_mutual_info` computes the whole matrix from one sort of joint labels
per row latent instead of one `sklearn.metrics.mutual_info_score` call per
pair; it evaluates the same formula term by term and agrees with it to
floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trainables.metrics._common import MetricInputs, MetricSpec, as_codes, as_factors, require_varied, top_two_gap

METRIC = "MIG"
SCORES = ("mig",)


def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each latent into num_bins equal-width bins over its own sample range (labels 1..num_bins).

    The bin edges are those of `np.histogram(x, num_bins)` and values are mapped
    with the left edges by `np.digitize`, exactly as the reference does, so a
    latent's maximum falls in the last bin and a constant latent in a single bin.
    """
    codes = as_codes(codes, "discretize", min_rows=1)
    if int(num_bins) != num_bins or num_bins < 1:
        raise ValueError(f"discretize: num_bins must be a positive integer, got {num_bins}")
    binned = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, d], bins=int(num_bins))
        binned[:, d] = np.digitize(codes[:, d], edges[:-1])
    return binned


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(D_a, D_b) matrix of mutual information (nats) between the columns of two label arrays.

    Same semantics as `sklearn.metrics.mutual_info_score(a[:, i], b[:, j])`:
    labels are arbitrary integers, a column with a single value has zero mutual
    information with everything, tiny terms (below machine epsilon) are dropped
    and the result is clipped at 0.
    """
    a_labels, a_counts = _relabel(_as_labels(a, "a"))
    b_labels, b_counts = _relabel(_as_labels(b, "b"))
    if a_labels.shape[0] != b_labels.shape[0]:
        raise ValueError(f"discrete_mutual_info: a has {a_labels.shape[0]} rows but b has {b_labels.shape[0]}")
    num_rows, num_b = b_labels.shape
    a_width, b_width = a_counts.shape[1], b_counts.shape[1]
    log_n = np.log(num_rows)
    mi = np.empty((a_labels.shape[1], num_b))
    for i in range(a_labels.shape[1]):
        # One key per cell (column j of b, label of a_i, label of b_j): a single sort counts every cell.
        keys = (np.arange(num_b) * a_width + a_labels[:, i, None]) * b_width + b_labels
        cells, joint = np.unique(keys, return_counts=True)
        column, rest = np.divmod(cells, a_width * b_width)
        a_value, b_value = np.divmod(rest, b_width)
        outer = a_counts[i, a_value] * b_counts[column, b_value]
        share = joint / num_rows
        terms = share * (np.log(joint) - log_n) + share * (-np.log(outer) + 2 * log_n)
        terms[np.abs(terms) < np.finfo(terms.dtype).eps] = 0.0
        mi[i] = np.bincount(column, weights=terms, minlength=num_b)
    mi[_single_valued(a_counts), :] = 0.0
    mi[:, _single_valued(b_counts)] = 0.0
    return np.clip(mi, 0.0, None)


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of a label array: its mutual information with itself."""
    _, counts = _relabel(_as_labels(factors, "factors"))
    num_rows = counts[0].sum()
    # Padding zeros have share 0; log(1) keeps their term an exact 0 instead of 0 * -inf.
    share = counts / num_rows
    return np.sum(share * (np.log(num_rows) - np.log(np.maximum(counts, 1))), axis=1)


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    """Mean over factors of the normalised gap between the two most informative latents."""
    codes = as_codes(codes, METRIC)
    factors = as_factors(factors, codes.shape[0], METRIC)
    if codes.shape[1] < 2:
        raise ValueError(f"{METRIC}: needs at least two latents to take a gap, got D={codes.shape[1]}")
    require_varied(factors, METRIC)
    mutual_info = discrete_mutual_info(discretize(codes, num_bins), factors)
    return dict(zip(SCORES, (float(np.mean(top_two_gap(mutual_info) / discrete_entropy(factors))),)))


def _as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Check a label array: 2-D, integer, at least one row."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"discrete mutual information: {name} must be a non-empty 2-D (n, D) array, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"discrete mutual information: {name} must hold integer labels, got dtype {arr.dtype}")
    return arr


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels mapped to 0..c-1 per column, and each column's label counts (rows padded with zeros)."""
    dense = np.empty(labels.shape, dtype=np.int64)
    counts = []
    for d in range(labels.shape[1]):
        _, dense[:, d], column_counts = np.unique(labels[:, d], return_inverse=True, return_counts=True)
        counts.append(column_counts)
    padded = np.zeros((len(counts), max(c.size for c in counts)), dtype=np.int64)
    for d, column_counts in enumerate(counts):
        padded[d, : column_counts.size] = column_counts
    return dense, padded


def _single_valued(counts: np.ndarray) -> np.ndarray:
    """Which columns, given by their padded label counts, hold a single label."""
    return np.count_nonzero(counts, axis=1) == 1


def _evaluate(inputs: MetricInputs, sizes: Mapping[str, int]) -> dict[str, float]:
    return mig(*inputs.split("train", METRIC)(sizes["num_train"]), num_bins=sizes["num_bins"])


SPEC = MetricSpec(
    name="mig", scores=SCORES, sizes={"num_train": 10000, "num_bins": 20}, evaluate=_evaluate, splits=("train",)
)
