import math

import pytest
import torch

from trainables.objectives.beta_vae import BetaVAE


def test_loss_is_recon_plus_beta_times_kl():
    # Model 0: one image of two pixels at logits 0 (log 2 each), mu 2 -> KL 2.
    # Model 1: the same pixels, mu 0 and variance e -> KL 0.5 (e - 1 - 1).
    logits = torch.zeros(1, 2, 1, 1, 2)
    images = torch.tensor([[[[[1.0, 0.0]]], [[[0.0, 0.0]]]]])
    mu = torch.tensor([[[2.0]], [[0.0]]])
    logvar = torch.tensor([[[0.0]], [[1.0]]])
    terms = BetaVAE(beta=4.0).terms(images, logits, mu, logvar, mu, step=0)
    kl = [2.0, 0.5 * (math.e - 2.0)]
    assert terms.kl.tolist() == pytest.approx(kl)
    assert terms.loss.tolist() == pytest.approx([2 * math.log(2) + 4.0 * k for k in kl])
    assert terms.extra == {}
