"""The beta-VAE objective with a capacity target: recon + beta * |KL - C(t)|.

C_max = 0 gives the plain beta-VAE (Higgins et al. 2017), beta = 1 with
C_max = 0 the plain VAE, and C_max > 0 the capacity-annealed variant of
Burgess et al. (2018), where beta plays the part of their gamma.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

ACTIVE_KL_THRESHOLD = 0.01  # nats; a latent below it carries no information (as in UDR)


def capacity_at(step: int, capacity_max: float, capacity_steps: int) -> float:
    """C(t) = min(C_max, C_max * t / capacity_steps), annealed linearly from 0."""
    if capacity_steps <= 0:
        return float(capacity_max)
    return float(min(capacity_max, capacity_max * step / capacity_steps))


@dataclass
class LossTerms:
    """Batch means of S models, (S,) each, and (S, D) for `kl_per_latent`. All stay on the device."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_per_latent: torch.Tensor


def kl_per_latent(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each latent, averaged over the batch: (D,), or (S, D) for codes (S, B, D)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).mean(dim=-2)


def beta_vae_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float,
    capacity: float,
) -> LossTerms:
    """Bernoulli NLL summed over pixels plus beta * |KL - C|, both per image, for S models at once:
    every term per model, (S,), and (S, D) per latent.

    Images are (B, S, C, H, W), the layout the stacked convolutions work in
    (`trainables.stacked`), codes (S, B, D). Each model's recon is one sum
    over its whole batch, as a lone model's loss is.
    """
    batch = target.shape[0]
    recon = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").sum(dim=(0, 2, 3, 4)) / batch
    per_latent = kl_per_latent(mu.float(), logvar.float())
    kl = per_latent.sum(dim=-1)
    return LossTerms(loss=recon + beta * (kl - capacity).abs(), recon=recon, kl=kl, kl_per_latent=per_latent)
