"""Unsupervised disentanglement ranking, UDR (Duan et al. 2020), as disentanglement_lib defines it.

UDR ranks models without ground truth by how consistently different runs learn
the same latents. For a pair of models (a, b) with codes for one shared set of
observations: both code matrices are standardised, latents with average KL at
or below `kl_threshold` are inactive and zeroed, and R[i, j] relates a's latent i
to b's latent j, either |Spearman correlation| or |Lasso(alpha=0.1)
coefficient| regressing b's codes on a's. Over the active rows and columns the
score is 0.5 * (mean over columns of max(R)^2 / sum(R) + mean over rows of
max(R)^2 / sum(R)), nan counted as 0. It is highest when the active latents
match one to one (any permutation and sign) and falls as they mix: near 1 with
Spearman (independent latents still correlate by about 1/sqrt(n)), 0.9 with
Lasso, whose alpha shrinks even a perfect coefficient to 0.9.
A model's UDR is the median of its scores against the other models.

As in the reference, the means run over the active latents only: inactive
latents are zeroed before R is computed and their rows and columns dropped
after, so they neither count as zeros nor lower the score. The Spearman matrix
is computed for all latent pairs at once from column ranks; it equals
scipy.stats.spearmanr pair by pair, nan for a constant latent included.

Deliberate differences from the reference:
- A pair with no active latent on one side scores 0 (the reference fails on
  the empty matrix).
- `kl_threshold` decides both which latents are zeroed and which are dropped;
  the reference zeroes at a fixed 0.01 whatever its threshold (the same at the
  default).
- The two code matrices may differ in width (the reference asserts equal
  shapes); they must share their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRIC = "UDR"
METHODS = ("spearman", "lasso")


@dataclass(frozen=True)
class _Prepared:
    """One model's standardised codes, inactive latents zeroed, and its mask of active latents."""

    codes: np.ndarray
    active: np.ndarray


def udr_pair_score(
    codes_a: np.ndarray,
    codes_b: np.ndarray,
    kl_a: np.ndarray,
    kl_b: np.ndarray,
    method: str = "spearman",
    kl_threshold: float = 0.01,
) -> float:
    """Similarity of two models' active latents, 1 for a one-to-one match up to permutation and sign."""
    _check_method(method)
    a = _prepare(codes_a, kl_a, kl_threshold, "model a")
    b = _prepare(codes_b, kl_b, kl_threshold, "model b")
    return _pair_score(a, b, method)


def udr_scores(
    codes_list: Sequence[np.ndarray],
    kl_list: Sequence[np.ndarray],
    method: str = "spearman",
    kl_threshold: float = 0.01,
) -> np.ndarray:
    """Each model's UDR: the median of score(other, model) over the other models."""
    _check_method(method)
    if len(codes_list) != len(kl_list):
        raise ValueError(f"{METRIC}: {len(codes_list)} code matrices but {len(kl_list)} KL vectors")
    if len(codes_list) < 2:
        raise ValueError(f"{METRIC}: ranking needs at least two models, got {len(codes_list)}")
    models = [_prepare(c, kl, kl_threshold, f"model {i}") for i, (c, kl) in enumerate(zip(codes_list, kl_list))]
    rows = {m.codes.shape[0] for m in models}
    if len(rows) > 1:
        raise ValueError(f"{METRIC}: all models must encode the same observations, got row counts {sorted(rows)}")
    others = [[j for j in range(len(models)) if j != i] for i in range(len(models))]
    return np.array(
        [np.median([_pair_score(models[j], models[i], method) for j in others[i]]) for i in range(len(models))]
    )


def _check_method(method: str) -> None:
    """Refuse an unknown way of relating two models' latents."""
    if method not in METHODS:
        raise ValueError(f"{METRIC}: method must be one of {METHODS}, got {method!r}")


def _prepare(codes: np.ndarray, kl: np.ndarray, kl_threshold: float, name: str) -> _Prepared:
    """Standardise (a constant latent stays 0, as with StandardScaler) and zero the inactive latents."""
    arr = np.asarray(codes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] < 2:
        raise ValueError(
            f"{METRIC}: codes of {name} must be a 2-D (n, D) array with n >= 2 and D >= 1, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{METRIC}: codes of {name} contain non-finite values (nan or inf)")
    kl = np.asarray(kl, dtype=np.float64)
    if kl.shape != (arr.shape[1],):
        raise ValueError(
            f"{METRIC}: KL of {name} must have one entry per latent ({arr.shape[1]}), got shape {kl.shape}"
        )
    std = arr.std(axis=0)
    std[std == 0] = 1.0
    active = kl > kl_threshold
    return _Prepared(codes=(arr - arr.mean(axis=0)) / std * active, active=active)


def _pair_score(a: _Prepared, b: _Prepared, method: str) -> float:
    """Relative strength of the relation matrix restricted to both models' active latents."""
    if a.codes.shape[0] != b.codes.shape[0]:
        raise ValueError(
            f"{METRIC}: the two models encode different numbers of observations: "
            f"{a.codes.shape[0]} vs {b.codes.shape[0]}"
        )
    relation = _spearman_matrix(a.codes, b.codes) if method == "spearman" else _lasso_matrix(a.codes, b.codes)
    return _relative_strength(relation[np.ix_(a.active, b.active)])


def _spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Spearman correlation| of every latent of a (rows) with every latent of b (columns); nan for constants."""
    import scipy.stats  # imported here: importing the metric specs loads no scipy.stats

    ranks_a = scipy.stats.rankdata(a, axis=0)
    ranks_b = scipy.stats.rankdata(b, axis=0)
    ranks_a -= ranks_a.mean(axis=0)
    ranks_b -= ranks_b.mean(axis=0)
    norms = np.outer(np.linalg.norm(ranks_a, axis=0), np.linalg.norm(ranks_b, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(ranks_a.T @ ranks_b / norms)


def _lasso_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Lasso(alpha=0.1) coefficients| regressing b's latents (columns) on a's latents (rows)."""
    from sklearn.linear_model import Lasso  # imported here: importing the metric specs loads no scikit-learn

    return np.abs(Lasso(alpha=0.1).fit(a, b).coef_.reshape(b.shape[1], a.shape[1])).T


def _relative_strength(relation: np.ndarray) -> float:
    """0.5 * (mean over columns + mean over rows of max^2 / sum), nan counted as 0; 0 when empty."""
    if relation.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_column = np.nan_to_num(relation.max(axis=0) ** 2 / relation.sum(axis=0))
        per_row = np.nan_to_num(relation.max(axis=1) ** 2 / relation.sum(axis=1))
    return float((per_column.mean() + per_row.mean()) / 2)
