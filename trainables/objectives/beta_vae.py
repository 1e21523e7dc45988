"""beta-VAE (Higgins et al. 2017): recon + beta * KL.

Reference: disentanglement_lib `methods/unsupervised/vae.py`, class `BetaVAE`
(`regularizer` returns `self.beta * kl_loss`); the study (`config/
unsupervised_study_v1/sweep.py`) names it `beta_vae` and sweeps `vae.beta`.
"""

from __future__ import annotations

import torch

from trainables.objectives.base import Objective
from trainables.settings import OBJECTIVE_WEIGHTS


class BetaVAE(Objective):
    kind = "beta_vae"
    weights = OBJECTIVE_WEIGHTS["beta_vae"]

    def __init__(self, beta: float) -> None:
        self.beta = float(beta)

    def regularizer(
        self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.beta * kl, {}
