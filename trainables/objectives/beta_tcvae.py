"""beta-TCVAE (Chen et al. 2018, Eq. 4 with alpha = gamma = 1): KL + (beta - 1) * TC.

Reference: disentanglement_lib `methods/unsupervised/vae.py`, class
`BetaTCVAE` with `total_correlation` and `gaussian_log_density`; the study
names it `beta_tc_vae`. The regulariser keeps the whole KL and adds the
total-correlation part once more, weighted by beta - 1: beta = 1 is the
plain VAE.

TC is the reference's minibatch estimate: each sample z_j is scored under
every posterior q(z | x_i) of the batch (a batch x batch x latents tensor),
log q(z_j) ~ logsumexp_i prod_l q(z_jl | x_i) and log prod_l q(z_jl) ~
sum_l logsumexp_i q(z_jl | x_i). Like the reference it leaves out the
constant (D - 1) * log(batch_size * dataset_size), which changes no gradient
but makes the logged `tc` that much lower than the total correlation itself.
"""

from __future__ import annotations

import math

import torch

from trainables.objectives.base import Objective
from trainables.settings import OBJECTIVE_WEIGHTS

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(samples: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(samples; mean, exp(logvar)), elementwise with broadcasting (vae.py, `gaussian_log_density`)."""
    deviation = samples - mean
    return -0.5 * (deviation.square() * torch.exp(-logvar) + logvar + _LOG_2PI)


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The reference's minibatch TC estimate of each model: (S,) for codes (S, B, D).

    Indexed [s, j, i, l] as the reference's [j, i, l]: sample j of model s
    under the posterior of its image i, latent l. Each model's batch meets only
    its own posteriors.
    """
    log_q = gaussian_log_density(z.unsqueeze(2), mu.unsqueeze(1), logvar.unsqueeze(1))  # (S, B, B, D)
    log_q_product = torch.logsumexp(log_q, dim=2).sum(dim=-1)  # (S, B)
    log_q_joint = torch.logsumexp(log_q.sum(dim=-1), dim=2)  # (S, B)
    return (log_q_joint - log_q_product).mean(dim=-1)


class BetaTCVAE(Objective):
    kind = "beta_tcvae"
    weights = OBJECTIVE_WEIGHTS["beta_tcvae"]

    def __init__(self, beta: float) -> None:
        self.beta = float(beta)

    def regularizer(
        self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tc = total_correlation(z, mu, logvar)
        return kl + (self.beta - 1.0) * tc, {"tc": tc}
