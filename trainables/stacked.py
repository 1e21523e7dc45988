"""S reference beta-VAEs as one module: every parameter of `BetaVAE` with a leading model dimension.

One step of S models then costs the kernels of one: each convolution is one
grouped convolution (groups = S), each linear layer one batched matrix
product. Nothing couples the models (the architecture has no batch
normalisation, and every kernel keeps the groups apart), so a model's slice
of the stack computes what the single model with its weights computes.

Written out rather than with `torch.func.stack_module_state` + `vmap`,
which lowers the convolutions to the same grouped ones. Measured on this
CPU (forward + backward of 5 models at batch 64, 1 thread, three rounds on a
shared machine): written out 0.48-0.51 s per step, vmap 0.47-0.52 s, the 5
single models one after another 0.46-0.47 s. On a CPU the work is the
arithmetic, which no arrangement removes, so the two forms tie and a pack
gains nothing there; the gain is on a GPU, where one model's kernels are too
small to fill the card. The written-out form is kept because it decides the
layouts (images stay in the grouped convolutions' layout from the first
layer to the loss, with no copy at layer boundaries), the noise is a plain
input (no vmap `randomness` mode), and `torch.compile` sees plain grouped
convolutions and batched products rather than functorch's transforms.

Layouts: images are (B, S, C, H, W), so that (B, S*C, H, W) is the grouped
convolutions' input with no copy and each model's channels are contiguous;
codes are (S, B, D). Parameter `i` of the stack is parameter `i` of
`BetaVAE.parameters()` with a leading S, so slicing the stack gives a
model's state dict and its Adam state in the single model's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainables.model import BetaVAE


class StackedBetaVAE(nn.Module):
    def __init__(self, models: Sequence[BetaVAE]) -> None:
        super().__init__()
        template = models[0]
        self.size = len(models)
        self.latent_dim = template.latent_dim
        self.channels = template.encoder.features[0].in_channels
        self.names = [name for name, _ in template.named_parameters()]
        states = [dict(m.named_parameters()) for m in models]
        self.stack = nn.ParameterList(
            nn.Parameter(torch.stack([s[name].detach() for s in states]).clone()) for name in self.names
        )
        self._index = {name: i for i, name in enumerate(self.names)}
        # The layers in order, as (kind, parameter prefix, stride, padding); read from the single
        # model so that the architecture is defined in one place (trainables.model).
        self._encoder = _layers(template.encoder.features, "encoder.features")
        self._decoder_fc = _layers(template.decoder.fc, "decoder.fc")
        self._decoder_deconv = _layers(template.decoder.deconv, "decoder.deconv")
        self._unflatten = template.decoder.deconv[0].in_channels

    def param(self, name: str) -> torch.Tensor:
        return self.stack[self._index[name]]

    def forward(
        self, x: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (B, S, C, H, W) of images x (B, S, C, H, W) with noise eps (S, B, D); mu, logvar and the
        sample z (S, B, D), which objectives such as FactorVAE and beta-TCVAE score."""
        mu, logvar = self.encode(x)
        z = mu + eps.to(mu.dtype) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar, z

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        h = self._run(self._encoder, x.reshape(batch, -1, *x.shape[3:]))
        return self._linear(h, "encoder.mean"), self._linear(h, "encoder.logvar")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self._run(self._decoder_fc, z)  # (S, B, F)
        batch, side = h.shape[1], round((h.shape[2] // self._unflatten) ** 0.5)
        h = h.transpose(0, 1).reshape(batch, self.size * self._unflatten, side, side)
        h = self._run(self._decoder_deconv, h)
        return h.view(batch, self.size, -1, *h.shape[2:])

    def _run(self, layers: list[tuple[str, str, int, int]], h: torch.Tensor) -> torch.Tensor:
        for kind, prefix, stride, padding in layers:
            if kind == "relu":
                h = F.relu(h)
            elif kind == "flatten":  # (B, S*C, H, W) -> (S, B, C*H*W), each model's features in its order
                h = h.reshape(h.shape[0], self.size, -1).transpose(0, 1)
            elif kind == "linear":
                h = self._linear(h, prefix)
            else:
                conv = F.conv2d if kind == "conv" else F.conv_transpose2d
                weight, bias = self.param(f"{prefix}.weight"), self.param(f"{prefix}.bias")
                h = conv(h, weight.flatten(0, 1), bias.flatten(), stride, padding, groups=self.size)
        return h

    def _linear(self, h: torch.Tensor, prefix: str) -> torch.Tensor:
        weight, bias = self.param(f"{prefix}.weight"), self.param(f"{prefix}.bias")
        return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))  # autocast casts all three

    # -- one model of the stack ------------------------------------------------------------
    def model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Model i's weights under the single model's names (views into the stack)."""
        return {name: p[i] for name, p in zip(self.names, self.stack)}

    def model(self, i: int) -> BetaVAE:
        """Model i as a plain `BetaVAE` on the stack's device: a copy with identical weights."""
        single = BetaVAE(self.latent_dim, self.channels).to(self.stack[0].device)
        single.load_state_dict({name: w.detach() for name, w in self.model_state(i).items()})
        return single

    def load_model(self, i: int, weights: dict[str, torch.Tensor]) -> None:
        """Set model i's slice from a single model's state dict."""
        with torch.no_grad():
            for name, p in zip(self.names, self.stack):
                p[i].copy_(weights[name])


def _layers(sequence: nn.Sequential, prefix: str) -> list[tuple[str, str, int, int]]:
    """The layers of one of the model's Sequentials, as the stacked forward runs them."""
    kinds = {
        nn.Conv2d: "conv", nn.ConvTranspose2d: "deconv", nn.Linear: "linear", nn.ReLU: "relu", nn.Flatten: "flatten"
    }
    layers = []
    for index, module in enumerate(sequence):
        kind = kinds.get(type(module))
        if kind is None:
            raise TypeError(f"{prefix}.{index}: no stacked form of {type(module).__name__}")
        stride = module.stride[0] if kind in ("conv", "deconv") else 1
        padding = module.padding[0] if kind in ("conv", "deconv") else 0
        layers.append((kind, f"{prefix}.{index}", stride, padding))
    return layers
