"""DIP-VAE's covariance penalty against loops over its definition (Kumar et al. 2018, Eq. 6 and 7)."""

import math

import numpy as np
import pytest
import torch

from trainables.objectives.dip_vae import DIPVAEI, DIPVAEII

MU = np.array([[[0.5, -1.0, 2.0], [1.5, 0.0, -1.0], [-0.5, 2.0, 0.5], [1.0, 1.0, 1.0]],
               [[2.0, 1.0, 0.0], [0.0, -2.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 0.5, 3.0]]])  # (S=2, B=4, D=3)
LOGVAR = np.array([[[0.1, -0.5, 0.3], [0.0, 0.2, -0.2], [0.4, 0.0, 0.1], [-0.3, 0.6, 0.0]],
                   [[0.2, 0.2, 0.2], [-1.0, 0.5, 0.0], [0.3, -0.3, 0.1], [0.0, 0.0, 0.0]]])


def covariance_by_loops(mu: np.ndarray, variances: np.ndarray | None) -> np.ndarray:
    """cov_{p(x)}[mu(x)] (+ E[diag(var)] for DIP-II), with the biased 1/B of the reference."""
    b, d = mu.shape
    mean = [sum(mu[n, k] for n in range(b)) / b for k in range(d)]
    cov = np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            cov[i, j] = sum((mu[n, i] - mean[i]) * (mu[n, j] - mean[j]) for n in range(b)) / b
    if variances is not None:
        for k in range(d):
            cov[k, k] += sum(variances[n, k] for n in range(b)) / b
    return cov


def penalty_by_loops(cov: np.ndarray, lambda_od: float, lambda_d: float) -> tuple[float, float, float]:
    d = cov.shape[0]
    off = sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    diag = sum((cov[k, k] - 1) ** 2 for k in range(d))
    return lambda_od * off + lambda_d * diag, off, diag


def terms_of(objective, mu: np.ndarray, logvar: np.ndarray):
    s, b, _ = mu.shape
    logits = torch.zeros(b, s, 1, 1, 1)  # recon = log 2 per model
    mu_t, logvar_t = torch.tensor(mu, dtype=torch.float32), torch.tensor(logvar, dtype=torch.float32)
    return objective.terms(torch.ones_like(logits), logits, mu_t, logvar_t, mu_t, step=0)


@pytest.mark.parametrize(
    ("objective", "posterior", "factor"), [(DIPVAEI(5.0), False, 10.0), (DIPVAEII(5.0), True, 1.0)]
)
def test_loss_is_recon_plus_kl_plus_the_weighted_covariance_penalty(objective, posterior, factor, kl_by_loops):
    terms = terms_of(objective, MU, LOGVAR)
    for s in range(2):
        cov = covariance_by_loops(MU[s], np.exp(LOGVAR[s]) if posterior else None)
        penalty, off, diag = penalty_by_loops(cov, 5.0, factor * 5.0)
        assert terms.extra["dip_offdiagonal"][s].item() == pytest.approx(off, rel=1e-5)
        assert terms.extra["dip_diagonal"][s].item() == pytest.approx(diag, rel=1e-5)
        expected = math.log(2) + kl_by_loops(MU[s], LOGVAR[s]) + penalty
        assert terms.loss[s].item() == pytest.approx(expected, rel=1e-5)


def test_the_penalty_is_zero_for_a_posterior_whose_covariance_is_the_identity(kl_by_loops):
    corners = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # mean 0, E[mu mu^T] = I
    mu, logvar = corners[None], np.zeros((1, 4, 2))
    i = terms_of(DIPVAEI(50.0), mu, logvar)  # cov(mu) = I
    assert i.extra["dip_offdiagonal"].item() == 0.0 and i.extra["dip_diagonal"].item() == 0.0
    assert i.loss.item() == pytest.approx(math.log(2) + kl_by_loops(mu[0], logvar[0]))
    half = np.sqrt(0.5) * corners[None]  # cov(mu) = I / 2, plus E[diag(var)] = I / 2
    ii = terms_of(DIPVAEII(50.0), half, np.full((1, 4, 2), math.log(0.5)))
    assert ii.extra["dip_offdiagonal"].item() == pytest.approx(0.0, abs=1e-12)
    assert ii.extra["dip_diagonal"].item() == pytest.approx(0.0, abs=1e-12)
    # DIP-VAE-I sees only the means: the same posterior is half the identity there.
    assert terms_of(DIPVAEI(1.0), half, np.zeros((1, 4, 2))).extra["dip_diagonal"].item() == pytest.approx(0.5)
