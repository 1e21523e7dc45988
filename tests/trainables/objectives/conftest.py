"""The Gaussian KL worked out by loops, shared by the objectives' tests (a fixture: conftest is not importable)."""

import math

import numpy as np
import pytest


def _kl_by_loops(mu: np.ndarray, logvar: np.ndarray) -> float:
    """sum over latents of KL(N(mu, exp(logvar)) || N(0, 1)), mean over the batch, for one model (B, D)."""
    b, d = len(mu), len(mu[0])
    total = sum(0.5 * (mu[n][k] ** 2 + math.exp(logvar[n][k]) - logvar[n][k] - 1) for n in range(b) for k in range(d))
    return total / b


@pytest.fixture(scope="session")
def kl_by_loops():
    return _kl_by_loops
