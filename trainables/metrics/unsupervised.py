"""Unsupervised scores of a representation (no factors needed), as disentanglement_lib defines them.

With S the covariance of the codes (D x D, ddof=1):
- Gaussian total correlation: KL between a Gaussian with covariance S and the
  product of its marginals, 0.5 * (sum_d log S_dd - log det S).
- Gaussian Wasserstein correlation: squared 2-Wasserstein distance between the
  same two Gaussians, 2 tr(S) - 2 tr(sqrtm(S * diag(S)[:, None])); also divided
  by tr(S).
- Mutual information score: mean of the off-diagonal entries of the
  latent-by-latent discrete mutual-information matrix (bins as for MIG).

Deliberate differences from the reference, each where it would give nan:
- Latents that are exactly constant are left out of the two Gaussian scores.
  They are independent of everything, so they add nothing to either score in
  the limit, but their zero variance makes the reference's log and sqrtm nan.
  With every latent constant, all three scores are 0.
- The trace of sqrtm is taken as a real number. The matrix is similar to the
  positive semi-definite diag(S)^1/2 S diag(S)^1/2, so its square root has a
  real trace; sqrtm may still return rounding-level imaginary parts.
Latents that are linear combinations of each other have an infinite Gaussian
total correlation, and it is reported as inf.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trainables.metrics._common import MetricInputs, MetricSpec, as_codes
from trainables.metrics.mig import discrete_mutual_info, discretize

METRIC = "Unsupervised scores"
SCORES = (
    "gaussian_total_correlation",
    "gaussian_wasserstein_correlation",
    "gaussian_wasserstein_correlation_norm",
    "mutual_info_score",
)


def unsupervised_scores(codes: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    """Gaussian total and Wasserstein correlation of the codes, and their mean pairwise mutual information."""
    codes = as_codes(codes, METRIC)
    num_latents = codes.shape[1]
    if num_latents < 2:
        raise ValueError(f"{METRIC}: correlations between latents need at least two, got D=1")
    covariance = np.cov(codes, rowvar=False)
    varying = np.diag(covariance) > 0
    varying_cov = covariance[np.ix_(varying, varying)]
    wasserstein = gaussian_wasserstein_correlation(varying_cov)
    total_variance = float(np.trace(varying_cov))

    binned = discretize(codes, num_bins)
    mutual_info = discrete_mutual_info(binned, binned)
    np.fill_diagonal(mutual_info, 0.0)
    scores = (
        gaussian_total_correlation(varying_cov),
        wasserstein,
        wasserstein / total_variance if total_variance > 0 else 0.0,
        float(mutual_info.sum() / (num_latents**2 - num_latents)),
    )
    return dict(zip(SCORES, scores))


def gaussian_total_correlation(covariance: np.ndarray) -> float:
    """Total correlation (nats) of a Gaussian with this covariance: 0.5 * (sum log diag - log det)."""
    if covariance.size == 0:
        return 0.0
    sign, log_det = np.linalg.slogdet(covariance)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.sum(np.log(np.diag(covariance))) - log_det))


def gaussian_wasserstein_correlation(covariance: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between a Gaussian and the product of its marginals."""
    if covariance.size == 0:
        return 0.0
    import scipy.linalg  # imported here: reading SPEC loads no scipy.linalg

    root = scipy.linalg.sqrtm(covariance * np.diag(covariance)[:, None])
    return float(2 * np.trace(covariance) - 2 * np.real(np.trace(root)))


def _evaluate(inputs: MetricInputs, sizes: Mapping[str, int]) -> dict[str, float]:
    codes, _ = inputs.split("train", METRIC)(sizes["num_train"])
    return unsupervised_scores(codes, num_bins=sizes["num_bins"])


SPEC = MetricSpec(
    name="unsupervised",
    scores=SCORES,
    sizes={"num_train": 10000, "num_bins": 20},
    evaluate=_evaluate,
    splits=("train",),
)
