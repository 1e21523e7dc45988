"""FactorVAE's discriminator, as the reference builds it, and S of them stacked.

Reference: disentanglement_lib `methods/shared/architectures.py`,
`fc_discriminator` (6 dense layers of 1000 units with `tf.nn.leaky_relu`,
whose slope is 0.2, then 2 logits) behind `make_discriminator` (softmax
probabilities clipped to [1e-6, 1 - 1e-6]). `tf.layers.dense` initialises
kernels Glorot-uniform and biases to zero; so does `Discriminator`. Its Adam
is the study's `discriminator/AdamOptimizer` (`config/unsupervised_study_v1/
model_configs/shared.gin`): lr 1e-4, beta1 0.5, beta2 0.9, epsilon 1e-8.

Seeding: the discriminator of the model with seed s draws its weights from a
CPU generator of its own (`discriminator_generator(s)`), on a stream derived
from s. The seed's other streams (`torch.manual_seed(s)` draws the VAE's
weights, the trainer's generator seeded with s its batches) are thereby left
untouched and uncorrelated with it, and a model's discriminator is the same
whichever pack, device or construction order it is built in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HIDDEN_UNITS = 1000
HIDDEN_LAYERS = 6
LEAKY_RELU_SLOPE = 0.2  # tf.nn.leaky_relu's default alpha
PROBABILITY_CLIP = 1e-6
LEARNING_RATE = 1e-4
BETAS = (0.5, 0.9)
EPSILON = 1e-8
_STREAM = 1  # the spawn key that separates a seed's discriminator stream from its other uses


def discriminator_generator(seed: int) -> torch.Generator:
    """The CPU generator that draws the initial weights of seed's discriminator."""
    derived = np.random.SeedSequence(int(seed), spawn_key=(_STREAM,)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(derived))


class Discriminator(nn.Module):
    """One model's discriminator: codes (N, D) -> logits (N, 2) of "a sample of q(z)" and "shuffled"."""

    def __init__(self, latent_dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(HIDDEN_LAYERS):
            layers += [_dense(width, HIDDEN_UNITS, generator), nn.LeakyReLU(LEAKY_RELU_SLOPE)]
            width = HIDDEN_UNITS
        layers.append(_dense(width, 2, generator))
        self.layers = nn.Sequential(*layers)

    @classmethod
    def seeded(cls, latent_dim: int, seed: int) -> Discriminator:
        return cls(latent_dim, discriminator_generator(seed))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


def _dense(fan_in: int, fan_out: int, generator: torch.Generator | None) -> nn.Linear:
    """A dense layer initialised as `tf.layers.dense` does, drawing only from `generator`."""
    layer = nn.utils.skip_init(nn.Linear, fan_in, fan_out)  # no draw from the global generator
    nn.init.xavier_uniform_(layer.weight, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


class StackedDiscriminator(nn.Module):
    """S discriminators as one module: each parameter of `Discriminator` with a leading model dimension.

    Each dense layer is one batched matrix product, so a slice computes what
    its own discriminator computes and nothing mixes the models. Parameter i
    of the stack is parameter i of `Discriminator.parameters()`, so the
    stack's Adam state splits per model in the single module's order.
    """

    def __init__(self, discriminators: Sequence[Discriminator]) -> None:
        super().__init__()
        self.size = len(discriminators)
        self.latent_dim = discriminators[0].layers[0].in_features
        self.names = [name for name, _ in discriminators[0].named_parameters()]
        states = [dict(d.named_parameters()) for d in discriminators]
        self.stack = nn.ParameterList(
            nn.Parameter(torch.stack([s[name].detach() for s in states]).clone()) for name in self.names
        )

    @classmethod
    def seeded(cls, seeds: Sequence[int], latent_dim: int) -> StackedDiscriminator:
        """The discriminators of these seeds, each as `Discriminator.seeded` draws it (on the CPU)."""
        return cls([Discriminator.seeded(latent_dim, seed) for seed in seeds])

    def forward(self, z: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        """Logits (S, N, 2) of codes (S, N, D).

        `detach_weights` treats the weights as constants: the gradient then
        reaches the codes and never the discriminator.
        """
        h = z
        last = len(self.stack) // 2 - 1
        for layer in range(last + 1):
            weight, bias = self.stack[2 * layer], self.stack[2 * layer + 1]
            if detach_weights:
                weight, bias = weight.detach(), bias.detach()
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if layer < last:
                h = F.leaky_relu(h, LEAKY_RELU_SLOPE)
        return h

    def model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Model i's weights under the single module's names: copies, so a checkpoint holds only them."""
        return {name: p[i].detach().clone() for name, p in zip(self.names, self.stack)}

    def load_model(self, i: int, weights: dict[str, torch.Tensor]) -> None:
        """Set model i's slice from a single discriminator's state dict."""
        if set(weights) != set(self.names):
            raise ValueError(f"discriminator weights {sorted(weights)} are not the expected {self.names}")
        with torch.no_grad():
            for name, p in zip(self.names, self.stack):
                p[i].copy_(weights[name])


def discriminator_optimizer(discriminator: StackedDiscriminator) -> torch.optim.Adam:
    """The study's discriminator Adam over the whole stack (per element, so per model)."""
    fused = discriminator.stack[0].device.type == "cuda"
    return torch.optim.Adam(discriminator.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPSILON, fused=fused)


def discriminator_loss(logits_real: torch.Tensor, logits_shuffled: torch.Tensor) -> torch.Tensor:
    """The discriminator's cross-entropy per model: (S,) for logits (S, B, 2).

    The reference's `discriminator_loss` is 0.5 * E[log p_real(z)] + 0.5 *
    E[log p_shuffled(shuffled z)] with clipped softmax probabilities, and its
    optimizer minimises the negative; this is that negative (log 2 at chance).
    """
    p_real = F.softmax(logits_real, dim=-1).clamp(PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    p_shuffled = F.softmax(logits_shuffled, dim=-1).clamp(PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
    return -0.5 * (p_real[..., 0].log().mean(dim=-1) + p_shuffled[..., 1].log().mean(dim=-1))
