import pytest
import torch
from torch import nn

from trainables.model import BetaVAE
from trainables.stacked import StackedBetaVAE, _layers


def seeded(seeds: tuple[int, ...], latent_dim: int = 6, channels: int = 1) -> list[BetaVAE]:
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(BetaVAE(latent_dim, channels))
    return models


@pytest.mark.parametrize("channels", [1, 3])
def test_each_slice_of_the_stack_computes_its_own_models_forward(channels):
    models = seeded((0, 1, 2), channels=channels)
    stack = StackedBetaVAE(models)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, channels, 64, 64, generator=generator)  # (B, S, C, H, W)
    eps = torch.randn(3, 5, 6, generator=generator)
    logits, mu, logvar, z = stack(x, eps)
    assert logits.shape == x.shape and mu.shape == logvar.shape == z.shape == (3, 5, 6)
    for i, model in enumerate(models):
        own_mu, own_logvar = model.encoder(x[:, i])
        own_z = own_mu + eps[i] * torch.exp(0.5 * own_logvar)
        own_logits = model.decoder(own_z)
        torch.testing.assert_close(z[i], own_z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mu[i], own_mu, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logvar[i], own_logvar, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits[:, i], own_logits, rtol=1e-4, atol=1e-4)


def test_a_slice_is_a_plain_model_with_the_same_weights_and_loads_back():
    models = seeded((4, 5))
    stack = StackedBetaVAE(models)
    assert [p.shape[0] for p in stack.parameters()] == [2] * len(list(models[0].parameters()))
    single = stack.model(1)
    assert type(single) is BetaVAE
    for key, value in models[1].state_dict().items():
        assert torch.equal(single.state_dict()[key], value)
    stack.load_model(0, models[1].state_dict())
    assert all(torch.equal(a, b) for a, b in zip(stack.model_state(0).values(), stack.model_state(1).values()))


def test_a_layer_without_a_stacked_form_is_named():
    with pytest.raises(TypeError, match=r"encoder.features.1: no stacked form of BatchNorm2d"):
        _layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), "encoder.features")
