"""FactorVAE (Kim & Mnih 2018, Eq. 2): recon + KL + gamma * TC, TC from a discriminator's density ratio.

Reference: disentanglement_lib `methods/unsupervised/vae.py`, class
`FactorVAE` (its own `model_fn`) and `shuffle_codes`. One forward pass gives
the sampled codes z; each latent is shuffled across the batch
(`tf.random_shuffle` per column); the discriminator scores both. The VAE
minimises recon + kl + gamma * E[logit_real - logit_fake] over the encoder
and decoder only; the discriminator minimises its cross-entropy over its own
weights only, with its own Adam; both updates run in one step from the same
forward (`tf.group(train_op_vae, train_op_discr)`).

Here the two losses are two graphs that each reach only their own
parameters: the TC term sees the discriminator's weights as constants, the
discriminator's loss sees the codes as constants. The trainer's one
`backward` of the VAE loss therefore leaves the discriminator untouched, and
`update` then steps the discriminator from the values of the same forward.
It must come after that backward: the TC term holds the discriminator's
weights, and autograd refuses a backward through weights changed in place.

Each model's permutation is drawn from that model's own generator (the
trainer's, after its batch and noise), so a model of a pack shuffles as the
single run of its seed does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainables import stacked_adam
from trainables.objectives.base import Objective, Terms
from trainables.objectives.discriminator import StackedDiscriminator, discriminator_loss, discriminator_optimizer
from trainables.settings import OBJECTIVE_WEIGHTS


def draw_permutation(generators: Sequence[torch.Generator], batch: int, latent_dim: int) -> torch.Tensor:
    """(S, B, D) indices: column [s, :, d] a permutation of the batch, drawn from generator s.

    One uniform draw per (latent, sample) in double precision, ranked: a
    uniformly random permutation per latent, from two kernels per model.
    """
    permutations = [
        torch.rand((latent_dim, batch), generator=g, device=g.device, dtype=torch.float64).argsort(dim=1).T
        for g in generators
    ]
    return torch.stack(permutations)


def shuffle_codes(z: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """z (S, B, D) with latent d of model s reordered across the batch by permutation[s, :, d]."""
    return z.gather(1, permutation)


class FactorVAE(Objective):
    kind = "factor_vae"
    weights = OBJECTIVE_WEIGHTS["factor_vae"]

    def __init__(
        self, gamma: float, discriminator: StackedDiscriminator, generators: Sequence[torch.Generator]
    ) -> None:
        if len(generators) != discriminator.size:
            raise ValueError(f"{len(generators)} generators for a stack of {discriminator.size} discriminators")
        self.gamma = float(gamma)
        self.discriminator = discriminator
        self.generators = list(generators)
        self.optimizer = discriminator_optimizer(discriminator)
        self._frozen = torch.empty(0, dtype=torch.long, device=discriminator.stack[0].device)

    def regularizer(
        self, kl: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch, latent_dim = z.shape[1], z.shape[2]
        permutation = draw_permutation(self.generators, batch, latent_dim)
        logits = self.discriminator(z, detach_weights=True)
        tc = (logits[..., 0] - logits[..., 1]).mean(dim=-1)
        codes = torch.cat((z, shuffle_codes(z, permutation)), dim=1).detach()
        scored = self.discriminator(codes)
        own_loss = discriminator_loss(scored[:, :batch], scored[:, batch:])
        return kl + self.gamma * tc, {"tc": tc, "discriminator_loss": own_loss}

    def update(self, terms: Terms) -> None:
        """The discriminator's Adam step on this step's `discriminator_loss`, failed models' slices held still."""
        self.optimizer.zero_grad(set_to_none=True)
        terms.extra["discriminator_loss"].sum().backward()
        if len(self._frozen):
            stacked_adam.zero_gradients(self.discriminator.parameters(), self._frozen)
        self.optimizer.step()

    def freeze(self, models: Sequence[int]) -> None:
        self._frozen = torch.tensor(sorted(models), dtype=torch.long, device=self._frozen.device)
        stacked_adam.clear_moments(self.optimizer, self._frozen)

    def model_state(self, i: int) -> dict[str, Any]:
        return {
            "discriminator": self.discriminator.model_state(i),
            "discriminator_optimizer": stacked_adam.model_state(self.optimizer.state_dict(), i),
        }

    def load_model_states(self, states: Sequence[dict[str, Any]]) -> None:
        if len(states) != self.discriminator.size:
            raise ValueError(f"{len(states)} saved states for a stack of {self.discriminator.size} discriminators")
        for i, state in enumerate(states):
            missing = {"discriminator", "discriminator_optimizer"} - set(state)
            if missing:
                raise ValueError(f"the state of model {i} lacks {sorted(missing)}")
            self.discriminator.load_model(i, state["discriminator"])
        self.optimizer.load_state_dict(stacked_adam.stacked_state([s["discriminator_optimizer"] for s in states]))
