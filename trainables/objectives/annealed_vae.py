"""AnnealedVAE (Burgess et al. 2018, Eq. 8): recon + gamma * |KL - C(t)|, C rising linearly to c_max.

Reference: disentanglement_lib `methods/unsupervised/vae.py`, class
`AnnealedVAE` and function `anneal`. The regulariser replaces the KL term
rather than adding to it, and penalises a KL below the target as much as one
above it. `capacity_steps` is the reference's `iteration_threshold`, a
setting of the sweep (`objective.capacity_steps`) rather than a searched
weight: the study fixes it at 100,000, and gamma at 1000.
"""

from __future__ import annotations

import torch

from trainables.objectives.base import Objective, capacity_at
from trainables.settings import OBJECTIVE_WEIGHTS


class AnnealedVAE(Objective):
    kind = "annealed_vae"
    weights = OBJECTIVE_WEIGHTS["annealed_vae"]

    def __init__(self, gamma: float, c_max: float, capacity_steps: int) -> None:
        self.gamma = float(gamma)
        self.c_max = float(c_max)
        self.capacity_steps = int(capacity_steps)

    def regularizer(
        self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        capacity = capacity_at(step, self.c_max, self.capacity_steps)
        return self.gamma * (kl - capacity).abs(), {"capacity": torch.full_like(kl, capacity)}
