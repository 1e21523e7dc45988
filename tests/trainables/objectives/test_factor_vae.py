"""FactorVAE: its loss from its definition, and the two updates of one step as the reference makes them."""

import math

import numpy as np
import pytest
import torch

from trainables.objectives.discriminator import StackedDiscriminator
from trainables.objectives.factor_vae import FactorVAE, draw_permutation

SEEDS = (4, 9)
Z = [[[0.3, -0.2], [1.1, 0.4], [-0.7, 0.9]], [[0.0, 0.1], [2.0, -1.0], [0.5, 0.5]]]  # (S=2, B=3, D=2)
MU = [[[0.2, 0.0], [1.0, 0.5], [-0.5, 1.0]], [[0.1, -0.2], [1.5, -1.2], [0.4, 0.3]]]
LOGVAR = [[[-0.5, 0.1], [0.0, -0.2], [0.3, 0.0]], [[0.0, 0.5], [-1.0, 0.0], [0.2, -0.4]]]


def generators(seeds=SEEDS) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def objective(gamma: float = 10.0, seeds=SEEDS) -> FactorVAE:
    return FactorVAE(gamma, StackedDiscriminator.seeded(seeds, latent_dim=2), generators(seeds))


def codes(nan_model: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z, mu, logvar = (torch.tensor(a, requires_grad=True) for a in (Z, MU, LOGVAR))
    if nan_model is not None:
        with torch.no_grad():
            z[nan_model, 0, 0] = float("nan")
    return z, mu, logvar


def terms_of(factor: FactorVAE, z, mu, logvar):
    logits = torch.zeros(3, 2, 1, 1, 1)  # recon = log 2 per model
    return factor.terms(torch.ones_like(logits), logits, mu, logvar, z, step=0)


def mlp(weights: dict[str, torch.Tensor], z: np.ndarray) -> np.ndarray:
    h = z
    for layer in range(7):
        h = h @ weights[f"layers.{2 * layer}.weight"].double().numpy().T + weights[f"layers.{2 * layer}.bias"].numpy()
        h = np.where(h > 0, h, 0.2 * h) if layer < 6 else h
    return h


def test_each_latent_is_permuted_across_the_batch_from_its_models_own_generator():
    permutation = draw_permutation(generators((0, 1, 2)), batch=50, latent_dim=3)
    assert permutation.shape == (3, 50, 3)
    for s in range(3):
        for d in range(3):
            assert sorted(permutation[s, :, d].tolist()) == list(range(50))
        alone = draw_permutation(generators((s,)), batch=50, latent_dim=3)
        assert torch.equal(permutation[s], alone[0])
    assert not torch.equal(permutation[0], permutation[1])


def test_loss_and_discriminator_loss_against_the_definition(kl_by_loops):
    factor = objective(gamma=10.0)
    weights = [factor.discriminator.model_state(i) for i in range(2)]
    permutation = draw_permutation(generators(), batch=3, latent_dim=2)  # what the objective will draw
    terms = terms_of(factor, *codes())
    for s in range(2):
        z = np.array(Z[s])
        shuffled = np.array([[z[permutation[s, b, d], d] for d in range(2)] for b in range(3)])
        real, fake = mlp(weights[s], z), mlp(weights[s], shuffled)
        tc = float(np.mean(real[:, 0] - real[:, 1]))  # E[log D(z) / (1 - D(z))]

        def log_p(logits, k):
            p = np.exp(logits[:, k]) / np.exp(logits).sum(axis=1)
            return np.log(np.clip(p, 1e-6, 1 - 1e-6))

        own = -(0.5 * log_p(real, 0).mean() + 0.5 * log_p(fake, 1).mean())
        kl = kl_by_loops(MU[s], LOGVAR[s])
        assert terms.extra["tc"][s].item() == pytest.approx(tc, rel=1e-4, abs=1e-6)
        assert terms.extra["discriminator_loss"][s].item() == pytest.approx(own, rel=1e-4)
        assert terms.loss[s].item() == pytest.approx(math.log(2) + kl + 10.0 * tc, rel=1e-4, abs=1e-5)


def test_the_vae_loss_moves_only_the_vae_and_the_discriminator_loss_only_the_discriminator():
    factor = objective()
    z, mu, logvar = codes()
    terms = terms_of(factor, z, mu, logvar)
    terms.loss.sum().backward()
    assert z.grad is not None and torch.count_nonzero(z.grad) > 0
    assert all(p.grad is None for p in factor.discriminator.parameters())
    vae_gradient = z.grad.clone()
    before = [p.detach().clone() for p in factor.discriminator.parameters()]
    factor.update(terms)
    assert torch.equal(z.grad, vae_gradient)  # the discriminator's backward reached no code
    assert all(not torch.equal(p, q) for p, q in zip(factor.discriminator.parameters(), before) if p.dim() == 3)


def test_the_discriminator_updates_after_the_vae_backward_from_the_same_forward():
    factor = objective()
    terms = terms_of(factor, *codes())
    factor.update(terms)  # moves the weights the VAE's TC term was computed with
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        terms.loss.sum().backward()


def test_the_discriminator_steps_with_adam_of_betas_half_and_nine_tenths():
    factor = objective()
    start = [p.detach().clone() for p in factor.discriminator.parameters()]
    gradients = []
    for _ in range(2):
        terms = terms_of(factor, *codes())
        terms.loss.sum().backward()
        factor.update(terms)
        gradients.append([p.grad.clone() for p in factor.discriminator.parameters()])
    lr, (b1, b2), eps = 1e-4, (0.5, 0.9), 1e-8
    for k, p in enumerate(factor.discriminator.parameters()):
        m, v, expected = torch.zeros_like(p), torch.zeros_like(p), start[k].double()
        for t, step_gradients in enumerate(gradients, start=1):
            g = step_gradients[k].double()
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            expected = expected - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        torch.testing.assert_close(p.detach().double(), expected, rtol=1e-5, atol=1e-7)


def test_a_nan_model_leaves_the_others_terms_and_discriminators_as_they_would_be():
    clean, poisoned = objective(), objective()
    clean_terms, poisoned_terms = terms_of(clean, *codes()), terms_of(poisoned, *codes(nan_model=1))
    assert math.isnan(poisoned_terms.extra["discriminator_loss"][1].item())
    for name in ("tc", "discriminator_loss"):
        assert torch.equal(poisoned_terms.extra[name][0], clean_terms.extra[name][0])
    assert torch.equal(poisoned_terms.loss[0], clean_terms.loss[0])
    clean.update(clean_terms)
    poisoned.update(poisoned_terms)
    for p, q in zip(clean.discriminator.parameters(), poisoned.discriminator.parameters()):
        assert torch.equal(p[0], q[0])


def test_a_frozen_models_discriminator_stays_still_while_the_others_train_on():
    factor = objective()
    factor.update(terms_of(factor, *codes()))
    factor.freeze([1])
    for state in factor.optimizer.state.values():
        assert torch.count_nonzero(state["exp_avg"][1]) == 0 and torch.count_nonzero(state["exp_avg_sq"][1]) == 0
        assert torch.count_nonzero(state["exp_avg"][0]) > 0
    before = [p.detach().clone() for p in factor.discriminator.parameters()]
    factor.update(terms_of(factor, *codes()))
    after = list(factor.discriminator.parameters())
    assert all(torch.equal(p[1], q[1]) for p, q in zip(after, before))
    assert any(not torch.equal(p[0], q[0]) for p, q in zip(after, before))


def test_each_models_state_saves_and_loads_into_a_new_pack():
    factor = objective()
    for _ in range(2):
        factor.update(terms_of(factor, *codes()))
    states = [factor.model_state(i) for i in range(2)]
    resumed = objective()
    resumed.load_model_states(states)
    resumed.generators = generators()
    factor.generators = generators()
    factor.update(terms_of(factor, *codes()))
    resumed.update(terms_of(resumed, *codes()))
    for p, q in zip(factor.discriminator.parameters(), resumed.discriminator.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="lacks"):
        resumed.load_model_states([states[0], {}])
