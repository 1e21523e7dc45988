import torch

from trainables.model import BetaVAE


def test_shapes_follow_the_reference_architecture():
    model = BetaVAE(latent_dim=7)
    x = torch.zeros(5, 1, 64, 64)
    logits, mu, logvar = model(x)
    assert logits.shape == (5, 1, 64, 64)
    assert mu.shape == logvar.shape == (5, 7)
    convs = [m for m in model.encoder.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 4, 2), (32, 4, 2), (64, 2, 2), (64, 2, 2)
    ]
    deconvs = [m for m in model.decoder.deconv if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(d.out_channels, d.kernel_size[0], d.stride[0]) for d in deconvs] == [
        (64, 4, 2), (32, 4, 2), (32, 4, 2), (1, 4, 2)
    ]
