"""The reference beta-VAE encoder and decoder (Locatello et al. 2019).

Kept layer for layer as in the study so that scores are comparable: TF's
"same" padding for the 4x4 stride-2 convolutions is padding 1 here, and the
2x2 stride-2 ones need none.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class Encoder(nn.Module):
    """64x64 image -> mean and log-variance of q(z|x)."""

    def __init__(self, latent_dim: int, channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),  # 32x32
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),  # 16x16
            nn.Conv2d(32, 64, 2, 2), nn.ReLU(),  # 8x8
            nn.Conv2d(64, 64, 2, 2), nn.ReLU(),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
        )
        self.mean = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mean(h), self.logvar(h)


class Decoder(nn.Module):
    """Latent code -> Bernoulli logits of each pixel."""

    def __init__(self, latent_dim: int, channels: int = 1) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),  # 8x8
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),  # 16x16
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),  # 32x32
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # 64x64 logits
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, 64, 4, 4))


class BetaVAE(nn.Module):
    def __init__(self, latent_dim: int = 10, channels: int = 1) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(latent_dim, channels)
        self.decoder = Decoder(latent_dim, channels)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the reconstruction from one reparameterised sample, with mu and logvar.

        The noise comes from `generator` when given, so a trial's randomness is its own
        and is restored exactly from a checkpoint.
        """
        mu, logvar = self.encoder(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def model_sizes(weights: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The sizes a `BetaVAE` is built with, as its weights give them: `BetaVAE(**model_sizes(w))`.

    Read from the weights, so a checkpoint loads whatever settings its run
    recorded. Raises KeyError naming a tensor that the weights of a `BetaVAE` have and these lack.
    """
    return {
        "latent_dim": int(weights["encoder.mean.weight"].shape[0]),
        "channels": int(weights["encoder.features.0.weight"].shape[1]),  # 3 for colour and noisy images
    }
