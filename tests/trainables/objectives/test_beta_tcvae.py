"""beta-TCVAE's total correlation against loops over its definition, and against a known answer."""

import math

import numpy as np
import pytest
import torch

from trainables.objectives.beta_tcvae import BetaTCVAE, total_correlation

Z = np.array([[[0.3, -0.2], [1.1, 0.4], [-0.7, 0.9]], [[0.0, 0.0], [2.0, -1.0], [0.5, 0.5]]])  # (S=2, B=3, D=2)
MU = np.array([[[0.2, 0.0], [1.0, 0.5], [-0.5, 1.0]], [[0.1, -0.2], [1.5, -1.2], [0.4, 0.3]]])
LOGVAR = np.array([[[-0.5, 0.1], [0.0, -0.2], [0.3, 0.0]], [[0.0, 0.5], [-1.0, 0.0], [0.2, -0.4]]])


def log_normal(x: float, mean: float, logvar: float) -> float:
    return -0.5 * ((x - mean) ** 2 / math.exp(logvar) + logvar + math.log(2 * math.pi))


def tc_by_loops(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray) -> float:
    """mean_j [log sum_i prod_l q(z_jl|x_i) - sum_l log sum_i q(z_jl|x_i)], the reference's estimate."""
    b, d = z.shape
    total = 0.0
    for j in range(b):
        joint = math.log(sum(math.exp(sum(log_normal(z[j, l], mu[i, l], logvar[i, l]) for l in range(d)))
                             for i in range(b)))
        product = sum(math.log(sum(math.exp(log_normal(z[j, l], mu[i, l], logvar[i, l])) for i in range(b)))
                      for l in range(d))
        total += joint - product
    return total / b


def test_loss_is_recon_plus_kl_plus_beta_minus_one_times_tc(kl_by_loops):
    logits = torch.zeros(3, 2, 1, 1, 1)  # recon = log 2 per model
    z, mu, logvar = (torch.tensor(a, dtype=torch.float32) for a in (Z, MU, LOGVAR))
    terms = BetaTCVAE(beta=6.0).terms(torch.ones_like(logits), logits, mu, logvar, z, step=0)
    for s in range(2):
        tc = tc_by_loops(Z[s], MU[s], LOGVAR[s])
        assert terms.extra["tc"][s].item() == pytest.approx(tc, rel=1e-5)
        expected = math.log(2) + kl_by_loops(MU[s], LOGVAR[s]) + 5.0 * tc
        assert terms.loss[s].item() == pytest.approx(expected, rel=1e-5)


def test_the_estimate_is_near_zero_for_independent_codes_and_grows_with_their_correlation():
    # Means of correlation rho, posteriors N(mu, 0.3^2): the aggregate posterior is near Gaussian with
    # covariance C = cov(mu) + 0.3^2 I, whose total correlation is (log C11 + log C22 - log det C) / 2.
    # The reference leaves out the constant (D - 1) log B of a batch taken as the data set; added back here.
    batch, sigma, rhos = 1000, 0.3, (0.0, 0.5, 0.8, 0.95)
    generator = torch.Generator().manual_seed(0)
    means = []
    for rho in rhos:
        a, b = torch.randn(2, batch, generator=generator, dtype=torch.float64)
        means.append(torch.stack((a, rho * a + math.sqrt(1 - rho**2) * b), dim=-1))
    mu = torch.stack(means)  # (S=4, B, D=2): one model per correlation
    logvar = torch.full_like(mu, 2 * math.log(sigma))
    z = mu + sigma * torch.randn(mu.shape, generator=generator, dtype=torch.float64)
    tc = (total_correlation(z, mu, logvar) + math.log(batch)).tolist()
    assert abs(tc[0]) < 0.03
    assert tc == sorted(tc) and tc[-1] > 0.6
    for s, estimate in enumerate(tc):
        c = np.cov(mu[s].numpy().T, bias=True) + sigma**2 * np.eye(2)
        gaussian = 0.5 * (math.log(c[0, 0]) + math.log(c[1, 1]) - math.log(np.linalg.det(c)))
        assert estimate == pytest.approx(gaussian, abs=0.04)
