"""Synthetic representations with known disentanglement, shared by the metric tests.

An `Encoder` stands in for the caller's `represent`: it maps factor vectors to
codes. Its noise latents are fresh draws on every call, independent of the
factors, like latents collapsed to the prior and sampled; they come from the
encoder's own seeded generator, so a new encoder with the same seed repeats them.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from trainables.factors import sample_factors

SIZES = (3, 6, 10, 8, 8)
"""A small dSprites-like grid: five factors, the largest with 10 values (fewer than MIG's 20 bins)."""


class Encoder:
    """Codes of a factor grid: factor k scaled to [0, 1] in latent k, then noise latents; optionally rotated.

    With factor_latents=False the codes are noise only.
    """

    def __init__(
        self,
        sizes: tuple[int, ...] = SIZES,
        noise_dims: int = 5,
        factor_latents: bool = True,
        rotate: bool = False,
        seed: int = 0,
    ) -> None:
        self.sizes = sizes
        self.noise_dims = noise_dims
        self.factor_latents = factor_latents
        self.rng = np.random.default_rng(seed)
        dim = noise_dims + (len(sizes) if factor_latents else 0)
        self.rotation = ortho_group.rvs(dim, random_state=seed) if rotate else np.eye(dim)

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        noise = self.rng.normal(size=(len(factors), self.noise_dims))
        if not self.factor_latents:
            return noise @ self.rotation
        scaled = factors / (np.asarray(self.sizes) - 1.0)
        return np.concatenate([scaled, noise], axis=1) @ self.rotation

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes, factors) of n sampled factor vectors."""
        factors = sample_factors(self.sizes, n, np.random.default_rng(seed))
        return self(factors), factors


@pytest.fixture
def make_encoder() -> type[Encoder]:
    """The Encoder class, for tests that need two encoders with the same seed or other settings."""
    return Encoder


@pytest.fixture
def disentangled() -> Encoder:
    """Each factor alone in its own latent, plus five noise latents."""
    return Encoder()


@pytest.fixture
def rotated() -> Encoder:
    """The disentangled codes under a random rotation: same information, mixed across latents."""
    return Encoder(rotate=True)


@pytest.fixture
def noise() -> Encoder:
    """Ten noise latents, independent of the factors."""
    return Encoder(noise_dims=10, factor_latents=False)
