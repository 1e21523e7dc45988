"""For every objective: S stacked models are S single models of the same seeds, and a NaN model fails alone.

Each model is the reference VAE (64x64 images) built after `torch.manual_seed(seed)`, its batch and
noise drawn from its own generator; the first step's terms, VAE gradients and (FactorVAE) the
discriminator after its update are compared slice by slice.
"""

import pytest
import torch

from trainables.model import BetaVAE
from trainables.objectives import STUDY_GRID, make_objective
from trainables.stacked import StackedBetaVAE

SEEDS = (3, 5, 7)
LATENT, BATCH = 4, 4
WEIGHTS = {
    "beta_vae": {"beta": 4.0},
    "annealed_vae": {"gamma": 1000.0, "c_max": 5.0},
    "factor_vae": {"gamma": 10.0},
    "dip_vae_i": {"lambda_od": 5.0},
    "dip_vae_ii": {"lambda_od": 5.0},
    "beta_tcvae": {"beta": 6.0},
}
KINDS = list(STUDY_GRID)


def first_step(kind: str, seeds: tuple[int, ...], nan_model: int | None = None):
    """One step of the pack of `seeds`: its terms, its VAE's gradients, and its objective."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(BetaVAE(LATENT))
    stack = StackedBetaVAE(models)
    if nan_model is not None:
        with torch.no_grad():
            stack.param("encoder.logvar.bias")[nan_model, 0] = float("nan")
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    objective = make_objective(kind, WEIGHTS[kind], seeds, LATENT, generators, capacity_steps=100)
    x = torch.stack([(torch.rand(BATCH, 1, 64, 64, generator=g) > 0.5).float() for g in generators], dim=1)
    eps = torch.stack([torch.randn(BATCH, LATENT, generator=g) for g in generators])
    mu, logvar = stack.encode(x)
    z = mu + eps * torch.exp(0.5 * logvar)
    terms = objective.terms(x, stack.decode(z), mu, logvar, z, step=10)
    terms.loss.sum().backward()
    objective.update(terms)
    return terms, [p.grad for p in stack.parameters()], objective


def named_terms(terms) -> dict[str, torch.Tensor]:
    return {"loss": terms.loss, "recon": terms.recon, "kl": terms.kl, "kl_per_latent": terms.kl_per_latent,
            **terms.extra}


def own_state(objective, i: int) -> dict[str, torch.Tensor]:
    state = objective.model_state(i)
    return state.get("discriminator", {})


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_models_are_the_single_models_of_their_seeds(kind):
    terms, gradients, objective = first_step(kind, SEEDS)
    assert set(named_terms(terms)) >= {"loss", "recon", "kl"}
    for i, seed in enumerate(SEEDS):
        alone_terms, alone_gradients, alone = first_step(kind, (seed,))
        for name, value in named_terms(alone_terms).items():
            torch.testing.assert_close(named_terms(terms)[name][i], value[0], rtol=1e-4, atol=1e-4, msg=name)
        for stacked, single in zip(gradients, alone_gradients):
            torch.testing.assert_close(stacked[i], single[0], rtol=1e-3, atol=1e-5)
        for name, value in own_state(alone, 0).items():
            torch.testing.assert_close(own_state(objective, i)[name], value, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_model_fails_alone(kind):
    clean_terms, clean_gradients, clean = first_step(kind, SEEDS)
    terms, gradients, objective = first_step(kind, SEEDS, nan_model=1)
    assert not torch.isfinite(terms.loss[1])
    for name, value in named_terms(terms).items():
        for i in (0, 2):
            assert torch.equal(value[i], named_terms(clean_terms)[name][i]), name
    for poisoned, kept in zip(gradients, clean_gradients):
        assert torch.equal(poisoned[0], kept[0]) and torch.equal(poisoned[2], kept[2])
    for name, value in own_state(objective, 0).items():
        assert torch.equal(value, own_state(clean, 0)[name])
        assert torch.equal(own_state(objective, 2)[name], own_state(clean, 2)[name])
