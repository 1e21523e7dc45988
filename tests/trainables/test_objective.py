import math

import pytest
import torch

from trainables.objective import beta_vae_loss, capacity_at, kl_per_latent


def test_capacity_rises_linearly_then_holds():
    assert capacity_at(0, 25.0, 100) == 0.0
    assert capacity_at(50, 25.0, 100) == 12.5
    assert capacity_at(100, 25.0, 100) == 25.0
    assert capacity_at(10_000, 25.0, 100) == 25.0
    assert capacity_at(5, 0.0, 100) == 0.0  # plain beta-VAE
    assert capacity_at(5, 7.0, 0) == 7.0  # no annealing


def test_kl_per_latent_matches_the_closed_form():
    mu = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, math.log(2.0)]])
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 (mu^2 + s^2 - log s^2 - 1)
    expected = torch.tensor([0.5 * (1 + 9) / 2, 0.5 * (2 - math.log(2.0) - 1)])
    torch.testing.assert_close(kl_per_latent(mu, logvar), expected)


def test_loss_terms_against_hand_computed_values():
    # One model, one image of 2 pixels: logits 0 give p = 0.5, so each pixel costs log 2 nats.
    logits = torch.zeros(1, 1, 1, 1, 2)
    target = torch.tensor([[[[[1.0, 0.0]]]]])
    mu = torch.tensor([[[2.0]]])
    logvar = torch.tensor([[[0.0]]])
    terms = beta_vae_loss(logits, target, mu, logvar, beta=4.0, capacity=0.5)
    assert terms.recon.item() == pytest.approx(2 * math.log(2.0))
    assert terms.kl.item() == pytest.approx(2.0)  # 0.5 * mu^2
    assert terms.loss.item() == pytest.approx(2 * math.log(2.0) + 4.0 * abs(2.0 - 0.5))
    below = beta_vae_loss(logits, target, mu, logvar, beta=4.0, capacity=3.0)
    assert below.loss.item() == pytest.approx(2 * math.log(2.0) + 4.0 * 1.0)  # |KL - C| penalises both sides


def test_recon_is_summed_over_pixels_and_averaged_over_the_batch():
    logits = torch.zeros(3, 1, 1, 4, 4)
    target = torch.ones(3, 1, 1, 4, 4)
    terms = beta_vae_loss(logits, target, torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), beta=1.0, capacity=0.0)
    assert terms.recon.item() == pytest.approx(16 * math.log(2.0))
    assert terms.kl.item() == 0.0
    assert terms.kl_per_latent.shape == (1, 2)


def test_the_stacked_loss_is_each_models_own_loss():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 1, 8, 8, generator=generator)  # (B, S, C, H, W)
    target = (torch.rand(4, 3, 1, 8, 8, generator=generator) > 0.5).float()
    mu, logvar = torch.randn(3, 4, 5, generator=generator), torch.randn(3, 4, 5, generator=generator)  # (S, B, D)
    stacked = beta_vae_loss(logits, target, mu, logvar, beta=4.0, capacity=1.5)
    assert stacked.loss.shape == (3,) and stacked.kl_per_latent.shape == (3, 5)
    for i in range(3):
        own = beta_vae_loss(logits[:, i : i + 1], target[:, i : i + 1], mu[i : i + 1], logvar[i : i + 1], 4.0, 1.5)
        for name in ("loss", "recon", "kl", "kl_per_latent"):
            torch.testing.assert_close(getattr(stacked, name)[i], getattr(own, name)[0])
