"""FactorVAE's discriminator: the reference's shape, initialisation and optimizer, stacked per model."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainables.objectives.discriminator import (
    Discriminator,
    StackedDiscriminator,
    discriminator_loss,
    discriminator_optimizer,
)


def numpy_forward(weights: dict[str, torch.Tensor], z: np.ndarray) -> np.ndarray:
    """fc_discriminator: six dense layers of 1000 units with leaky ReLU (slope 0.2), then 2 logits."""
    h = z
    for layer in range(7):
        w = weights[f"layers.{2 * layer}.weight"].double().numpy()
        b = weights[f"layers.{2 * layer}.bias"].double().numpy()
        h = h @ w.T + b
        if layer < 6:
            h = np.where(h > 0, h, 0.2 * h)
    return h


def test_the_shape_and_initialisation_are_the_references():
    d = Discriminator.seeded(10, seed=0)
    dense = [m for m in d.layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dense] == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    assert [m.negative_slope for m in d.layers if isinstance(m, nn.LeakyReLU)] == [0.2] * 6
    for m in dense:  # tf.layers.dense: Glorot-uniform kernels, zero biases
        bound = math.sqrt(6 / (m.in_features + m.out_features))
        assert m.weight.abs().max().item() <= bound
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert torch.count_nonzero(m.bias).item() == 0


def test_a_seeds_discriminator_is_reproducible_and_leaves_the_global_generator_alone():
    before = torch.random.get_rng_state()
    a, b, other = Discriminator.seeded(4, 7), Discriminator.seeded(4, 7), Discriminator.seeded(4, 8)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, other.layers[0].weight)
    torch.manual_seed(7)  # the seed's global stream (the VAE's weights) is not the discriminator's
    assert not torch.equal(a.layers[0].weight, nn.init.xavier_uniform_(torch.empty(1000, 4)))


def test_each_slice_is_its_seeds_own_discriminator():
    seeds = (3, 5)
    stack = StackedDiscriminator.seeded(seeds, latent_dim=4)
    z = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0))
    logits = stack(z)
    assert logits.shape == (2, 6, 2)
    for i, seed in enumerate(seeds):
        single = Discriminator.seeded(4, seed)
        assert all(torch.equal(single.state_dict()[k], v) for k, v in stack.model_state(i).items())
        torch.testing.assert_close(logits[i], single(z[i]), rtol=1e-4, atol=1e-5)
        expected = numpy_forward(single.state_dict(), z[i].double().numpy())
        np.testing.assert_allclose(logits[i].detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_detached_weights_pass_the_gradient_to_the_codes_only():
    stack = StackedDiscriminator.seeded((0,), latent_dim=3)
    z = torch.randn(1, 5, 3, requires_grad=True)
    stack(z, detach_weights=True).sum().backward()
    assert z.grad is not None and all(p.grad is None for p in stack.parameters())


def test_a_models_state_is_a_copy_of_its_slice_and_loads_back():
    stack = StackedDiscriminator.seeded((1, 2, 3), latent_dim=3)
    state = stack.model_state(2)
    first = state["layers.0.weight"]
    assert first.untyped_storage().nbytes() == first.numel() * 4  # not the whole stack's storage
    stack.load_model(0, state)
    assert all(torch.equal(a, b) for a, b in zip(stack.model_state(0).values(), state.values()))
    with pytest.raises(ValueError, match="discriminator weights"):
        stack.load_model(1, {"layers.0.weight": first})


def test_the_optimizer_is_the_studys_discriminator_adam():
    optimizer = discriminator_optimizer(StackedDiscriminator.seeded((0,), latent_dim=2))
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert (group["lr"], group["betas"], group["eps"]) == (1e-4, (0.5, 0.9), 1e-8)


def test_the_loss_is_the_cross_entropy_of_clipped_softmax_probabilities():
    real = torch.tensor([[[2.0, -1.0], [0.0, 0.0]], [[30.0, -5.0], [1.0, 2.0]]])  # (S=2, B=2, 2)
    shuffled = torch.tensor([[[0.5, 1.5], [-2.0, 1.0]], [[40.0, 0.0], [0.0, 3.0]]])

    def probability(logits, k):  # softmax, clipped to [1e-6, 1 - 1e-6]
        p = math.exp(logits[k]) / (math.exp(logits[0]) + math.exp(logits[1]))
        return min(max(p, 1e-6), 1 - 1e-6)

    for s in range(2):
        log_real = sum(math.log(probability(row, 0)) for row in real[s].tolist()) / 2
        log_shuffled = sum(math.log(probability(row, 1)) for row in shuffled[s].tolist()) / 2
        expected = -(0.5 * log_real + 0.5 * log_shuffled)
        assert discriminator_loss(real, shuffled)[s].item() == pytest.approx(expected, rel=1e-5)
    assert discriminator_loss(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)).item() == pytest.approx(math.log(2))
