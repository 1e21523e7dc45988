import math

import pytest
import torch

from trainables.objectives.annealed_vae import AnnealedVAE


def test_loss_is_recon_plus_gamma_times_the_distance_of_kl_from_the_capacity():
    logits = torch.zeros(1, 2, 1, 1, 2)  # two pixels at log 2 nats each, both models
    images = torch.tensor([[[[[1.0, 0.0]]], [[[1.0, 1.0]]]]])
    mu = torch.tensor([[[2.0]], [[1.0]]])  # KL 2.0 and 0.5
    logvar = torch.zeros(2, 1, 1)
    objective = AnnealedVAE(gamma=1000.0, c_max=10.0, capacity_steps=100)
    terms = objective.terms(images, logits, mu, logvar, mu, step=10)  # C = 10 * 10 / 100 = 1
    assert terms.extra["capacity"].tolist() == [1.0, 1.0]
    # The KL is replaced, not added to; below the target costs as much as above it.
    assert terms.loss.tolist() == pytest.approx([2 * math.log(2) + 1000.0 * 1.0, 2 * math.log(2) + 1000.0 * 0.5])
    late = objective.terms(images, logits, mu, logvar, mu, step=1_000)
    assert late.extra["capacity"].tolist() == [10.0, 10.0]
    assert late.loss.tolist() == pytest.approx([2 * math.log(2) + 8000.0, 2 * math.log(2) + 9500.0])
