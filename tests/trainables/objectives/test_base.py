"""The shared terms against their definitions, worked out with plain numpy."""

import math

import numpy as np
import pytest
import torch

from trainables.objectives.base import bernoulli_reconstruction, capacity_at, gaussian_kl_per_latent
from trainables.objectives.beta_vae import BetaVAE


def test_capacity_rises_linearly_then_holds():
    assert capacity_at(0, 25.0, 100) == 0.0
    assert capacity_at(50, 25.0, 100) == 12.5
    assert capacity_at(100, 25.0, 100) == 25.0
    assert capacity_at(10_000, 25.0, 100) == 25.0
    assert capacity_at(5, 7.0, 0) == 7.0  # no annealing


def test_reconstruction_is_summed_over_pixels_and_averaged_over_the_batch_per_model():
    # Logits 0 give p = 0.5: every pixel costs log 2 nats whatever its target.
    logits = torch.zeros(3, 2, 1, 4, 4)  # (B, S, C, H, W)
    assert torch.allclose(bernoulli_reconstruction(logits, torch.ones_like(logits)), torch.full((2,), 16 * math.log(2)))
    # A hand example: one image per model, two pixels.
    logits = torch.tensor([[[[[2.0, -1.0]]], [[[0.5, 3.0]]]]])  # (1, 2, 1, 1, 2)
    target = torch.tensor([[[[[1.0, 0.0]]], [[[0.25, 1.0]]]]])

    def bce(x, t):  # -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))
        p = 1 / (1 + math.exp(-x))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    expected = [bce(2.0, 1.0) + bce(-1.0, 0.0), bce(0.5, 0.25) + bce(3.0, 1.0)]
    np.testing.assert_allclose(bernoulli_reconstruction(logits, target).numpy(), expected, rtol=1e-6)


def test_kl_per_latent_matches_the_closed_form():
    mu = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # (S=1, B=2, D=2)
    logvar = torch.tensor([[[0.0, math.log(2.0)], [0.0, math.log(2.0)]]])
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 (mu^2 + s^2 - log s^2 - 1), mean over the batch
    expected = [[0.5 * (1 + 9) / 2, 0.5 * (2 - math.log(2.0) - 1)]]
    np.testing.assert_allclose(gaussian_kl_per_latent(mu, logvar).numpy(), expected, rtol=1e-6)


def test_terms_are_each_models_own_in_float32():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 1, 2, 2, generator=generator)
    images = torch.rand(4, 3, 1, 2, 2, generator=generator)
    mu, logvar = torch.randn(3, 4, 5, generator=generator), torch.randn(3, 4, 5, generator=generator)
    terms = BetaVAE(beta=1.0).terms(images, logits, mu.bfloat16(), logvar.bfloat16(), mu.bfloat16(), step=0)
    assert terms.kl.dtype == torch.float32
    assert terms.loss.shape == terms.recon.shape == terms.kl.shape == (3,) and terms.kl_per_latent.shape == (3, 5)
    for s in range(3):
        m, lv = mu[s].bfloat16().double().numpy(), logvar[s].bfloat16().double().numpy()
        kl = (0.5 * (m**2 + np.exp(lv) - lv - 1)).mean(axis=0)
        x, t = logits[:, s].double().numpy(), images[:, s].double().numpy()
        recon = (np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))).sum() / 4
        assert terms.kl_per_latent[s].numpy() == pytest.approx(kl, rel=1e-5)
        assert terms.recon[s].item() == pytest.approx(recon, rel=1e-5)
        assert terms.loss[s].item() == pytest.approx(recon + kl.sum(), rel=1e-5)
