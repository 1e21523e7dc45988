"""The beta-VAE objective with a capacity target: recon + beta * |KL - C(t)|.

C_max = 0 gives the plain beta-VAE (Higgins et al. 2017), beta = 1 with
C_max = 0 the plain VAE, and C_max > 0 the capacity-annealed variant of
Burgess et al. (2018), where beta plays the part of their gamma.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def capacity_at(step: int, capacity_max: float, capacity_steps: int) -> float:
    """C(t) = min(C_max, C_max * t / capacity_steps), annealed linearly from 0."""
    if capacity_steps <= 0:
        return float(capacity_max)
    return float(min(capacity_max, capacity_max * step / capacity_steps))


@dataclass
class LossTerms:
    """Batch means; `kl_per_latent` is a (D,) tensor. All stay on the device."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_per_latent: torch.Tensor


def kl_per_latent(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each latent, averaged over the batch: (D,)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).mean(dim=0)


def beta_vae_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float,
    capacity: float,
) -> LossTerms:
    """Bernoulli NLL summed over pixels plus beta * |KL - C|, both per image."""
    batch = target.shape[0]
    recon = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum") / batch
    per_latent = kl_per_latent(mu.float(), logvar.float())
    kl = per_latent.sum()
    loss = recon + beta * (kl - capacity).abs()
    return LossTerms(loss=loss, recon=recon, kl=kl, kl_per_latent=per_latent)
