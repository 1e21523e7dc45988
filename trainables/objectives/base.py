"""What every objective of the study shares: the ELBO's two terms, the result type and the contract.

disentanglement_lib's `methods/unsupervised/vae.py` (`BaseVAE.model_fn`)
computes, for every objective, `loss = reconstruction_loss + regularizer(kl_loss,
z_mean, z_logvar, z_sampled)`: the Bernoulli reconstruction of
`methods/shared/losses.py` (`bernoulli_loss`, activation "logits") and the
Gaussian KL of `compute_gaussian_kl`. Here they are written once, for S >= 1
stacked models: images (B, S, C, H, W), codes (S, B, D), every term per model.
Nothing reduces over the model dimension, so a model that goes non-finite
leaves its seed-mates' terms and gradients as they were.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

ACTIVE_KL_THRESHOLD = 0.01  # nats; a latent below it carries no information (as in UDR)


def capacity_at(step: int, c_max: float, steps: int) -> float:
    """C(t) = min(C_max, C_max * t / steps), annealed linearly from 0 (vae.py, `anneal`); steps 0 holds C_max."""
    if steps <= 0:
        return float(c_max)
    return float(min(c_max, c_max * step / steps))


def bernoulli_reconstruction(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Bernoulli NLL of images (B, S, C, H, W) under logits: summed over pixels, mean over the batch: (S,)."""
    batch = images.shape[0]
    nll = F.binary_cross_entropy_with_logits(logits.float(), images.float(), reduction="none")
    return nll.sum(dim=(0, 2, 3, 4)) / batch


def gaussian_kl_per_latent(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of each latent, mean over the batch: (S, D) for codes (S, B, D)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).mean(dim=-2)


@dataclass(frozen=True)
class Terms:
    """One step's terms of S models, each per model.

    `loss` (S,) is what the VAE's optimizer minimises (the trainer sums it over
    models: each slice's gradient is then its own model's). `extra` holds the
    objective's own terms (S,) that each model's run logs, under short
    snake_case names; they are returned as computed, so the trainer detaches
    them before accumulating.
    """

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    kl_per_latent: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(ABC):
    """One of the study's objectives for a pack of S models (one configuration, S seeds).

    `terms` is the whole per-step contract for objectives without parameters
    of their own. The four hooks below it are for one that has some
    (FactorVAE's discriminator): the defaults say there is nothing to train,
    freeze or checkpoint.
    """

    kind: ClassVar[str]
    weights: ClassVar[tuple[str, ...]]  # the constructor's hyperparameters, named as the study names them

    def terms(
        self,
        images: torch.Tensor,
        logits: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        z: torch.Tensor,
        step: int,
    ) -> Terms:
        """The loss of S models from one forward pass.

        images, logits: (B, S, C, H, W); mu, logvar and the reparameterised
        sample z: (S, B, D); step: the steps done before this one (the
        reference's global step). Computed in float32 whatever the forward's
        dtype; call it outside autocast, which would lower the discriminator's
        products to bfloat16.
        """
        mu, logvar, z = mu.float(), logvar.float(), z.float()
        recon = bernoulli_reconstruction(logits, images)
        per_latent = gaussian_kl_per_latent(mu, logvar)
        kl = per_latent.sum(dim=-1)
        regularizer, extra = self.regularizer(kl, mu, logvar, z, step)
        return Terms(loss=recon + regularizer, recon=recon, kl=kl, kl_per_latent=per_latent, extra=extra)

    @abstractmethod
    def regularizer(
        self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reference's `regularizer(kl_loss, z_mean, z_logvar, z_sampled)`, per model: (S,), and the extra terms."""

    def update(self, terms: Terms) -> None:
        """One step of the objective's own parameters from `terms`; call it after the VAE's backward."""

    def freeze(self, models: Sequence[int]) -> None:
        """Stop the objective's own parameters of these models (every failed one so far), as their VAEs are."""

    def model_state(self, i: int) -> dict[str, Any]:
        """Model i's part of the objective's own state, for its checkpoint (tensors, numbers, strings)."""
        return {}

    def load_model_states(self, states: Sequence[dict[str, Any]]) -> None:
        """Restore every model's part (one `model_state` per model, in the pack's order)."""
        filled = [state for state in states if state]
        if filled:
            raise ValueError(f"{self.kind} keeps no state of its own; the checkpoint holds {sorted(filled[0])}")
