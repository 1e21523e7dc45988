"""Ground-truth factor arithmetic shared by the datasets and the metrics.

Pure numpy and torch-free so the metrics can depend on it without pulling the
model code in. A factor vector holds one integer class index per factor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_factor_sizes(factor_sizes: Sequence[int]) -> tuple[int, ...]:
    """Return the sizes as a tuple, refusing what no metric can use."""
    sizes = tuple(int(s) for s in factor_sizes)
    if not sizes:
        raise ValueError("factor_sizes is empty: a ground-truth dataset needs at least one factor")
    bad = [(k, s) for k, s in enumerate(sizes) if s < 1]
    if bad:
        raise ValueError(f"factor_sizes {sizes}: factor {bad[0][0]} has {bad[0][1]} values, needs at least 1")
    return sizes


def sample_factors(factor_sizes: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw n factor vectors, each factor independently uniform, with replacement.

    This is the sampling every reference metric assumes ("sample factors").
    """
    sizes = check_factor_sizes(factor_sizes)
    return rng.integers(0, np.asarray(sizes), size=(int(n), len(sizes)), dtype=np.int64)


def flat_index(factors: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
    """Row-major index of each factor vector in the full factor grid.

    dSprites stores its images in this order (last factor fastest), so the index
    is also the image's position in the original file.
    """
    sizes = check_factor_sizes(factor_sizes)
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(sizes):
        raise ValueError(f"factors must have shape (n, {len(sizes)}), got {factors.shape}")
    return np.ravel_multi_index(tuple(factors.T), sizes)
