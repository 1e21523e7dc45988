"""DIP-VAE I and II (Kumar et al. 2018, Eq. 6 and 7): KL plus a penalty on the codes' covariance.

Reference: disentanglement_lib `methods/unsupervised/vae.py`, class `DIPVAE`
with `compute_covariance_z_mean` and `regularize_diag_off_diag_dip`. The
regulariser is `kl + lambda_od * sum(offdiag(cov)^2) + lambda_d * sum((diag(cov) - 1)^2)`,
with lambda_d = lambda_d_factor * lambda_od. DIP-VAE-I takes the covariance
of the encoder's means over the batch; DIP-VAE-II the covariance of the whole
aggregate posterior, cov(z_mean) + E[diag(exp(z_logvar))]. The study fixes
lambda_d_factor by variant (10 for I, 1 for II: `sweep.py`), so each variant
here is its own kind with `lambda_od` as its one weight.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from trainables.objectives.base import Objective
from trainables.settings import OBJECTIVE_WEIGHTS


def covariance_of_means(mu: torch.Tensor) -> torch.Tensor:
    """cov(z_mean) = E[mu mu^T] - E[mu] E[mu]^T over the batch, per model: (S, D, D) for mu (S, B, D)."""
    second_moment = torch.einsum("sbi,sbj->sij", mu, mu) / mu.shape[-2]
    mean = mu.mean(dim=-2)
    return second_moment - mean.unsqueeze(-1) * mean.unsqueeze(-2)


def covariance_of_posterior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """cov(z) = cov(z_mean) + E[diag(exp(z_logvar))], per model: (S, D, D)."""
    return covariance_of_means(mu) + torch.diag_embed(logvar.exp().mean(dim=-2))


def covariance_deviations(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sum(offdiag^2) and sum((diag - 1)^2) of each model's covariance (S, D, D): two (S,) tensors."""
    diagonal = covariance.diagonal(dim1=-2, dim2=-1)
    off_diagonal = covariance - torch.diag_embed(diagonal)
    return off_diagonal.square().sum(dim=(-2, -1)), (diagonal - 1.0).square().sum(dim=-1)


class _DIPVAE(Objective):
    weights = OBJECTIVE_WEIGHTS["dip_vae_i"]
    lambda_d_factor: float

    def __init__(self, lambda_od: float) -> None:
        self.lambda_od = float(lambda_od)
        self.lambda_d = self.lambda_d_factor * self.lambda_od

    @abstractmethod
    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """The (S, D, D) covariance whose distance from the identity is penalised."""

    def regularizer(
        self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        off_diagonal, diagonal = covariance_deviations(self.covariance(mu, logvar))
        penalty = self.lambda_od * off_diagonal + self.lambda_d * diagonal
        return kl + penalty, {"dip_offdiagonal": off_diagonal, "dip_diagonal": diagonal}


class DIPVAEI(_DIPVAE):
    """DIP-VAE-I: the covariance of the means, lambda_d = 10 * lambda_od."""

    kind = "dip_vae_i"
    lambda_d_factor = 10.0

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return covariance_of_means(mu)


class DIPVAEII(_DIPVAE):
    """DIP-VAE-II: the covariance of the aggregate posterior, lambda_d = lambda_od."""

    kind = "dip_vae_ii"
    lambda_d_factor = 1.0

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return covariance_of_posterior(mu, logvar)
