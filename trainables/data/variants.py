"""The study's dSprites variants, made on the fly from any single-channel source, and the ground-truth switch.

As in the reference study (Locatello et al. 2019, disentanglement_lib):

- color: the sprite scaled by a random RGB colour, each channel uniform in
  [0.5, 1], drawn per observation, on a black background;
- noisy: the sprite (white, in RGB) on a background of uniform noise in
  [0, 1] per pixel and channel, drawn per observation; pixel = min(sprite + noise, 1);
- scream: the sprite cut into a patch of an image (the reference's is Munch's
  The Scream; `data.background` names yours). The image is fitted within
  350 x 274 pixels as the reference does (Pillow's `thumbnail`), and each
  observation takes a random 64 x 64 patch of it, averages it with a random
  RGB colour (each channel uniform in [0, 1]) and inverts the patch where
  the sprite is: pixel = b + s (1 - 2 b), which is 1 - b on the sprite and b
  off it for a binary sprite s, and blends the two for a grey one.

The colour and the noise are not factors, so an observation is no longer a
function of its factors (`deterministic` is False): the metrics encode every
observation instead of caching a code per factor cell.

`GroundTruth` chooses which factors count as ground truth (for example
dSprites without shape): the metrics see only those, while the observations
still vary in all of them, the others drawn at random per observation.

Randomness comes from the `generator` passed to `observations` (the trial's
generator in training, an evaluation's own stream in the metrics), so a
trial stays reproducible and restores exactly from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainables.data.base import DataError, FactorGrid, GroundTruthData, factor_tensor, uniform_factors_torch

VARIANTS: tuple[str, ...] = ("none", "color", "noisy", "scream")
BACKGROUND_FIT = (350, 274)  # the reference's thumbnail size for its background image (width, height)
PATCH = 64


class _Variant:
    """A source's factors, with its single-channel images turned into RGB observations."""

    deterministic = False
    name = ""

    def __init__(self, base: GroundTruthData) -> None:
        if base.image_shape[0] != 1:
            raise DataError(
                f"{base.description}: the {self.name} variant needs single-channel images, "
                f"these have {base.image_shape[0]} channels"
            )
        self.base = base
        self.device = base.device
        self.factor_names = base.factor_names
        self.factor_sizes = base.factor_sizes
        self.complete_grid = base.complete_grid
        self.image_shape = (3, *base.image_shape[1:])
        self.description = f"{self.name}-{base.description}"

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.base.sample_factors(n, rng)

    def sample_factors_torch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.base.sample_factors_torch(n, generator)

    def flat_index(self, factors: np.ndarray) -> np.ndarray:
        return self.base.flat_index(factors)


class Color(_Variant):
    name = "color"

    def observations(
        self, factors: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.base.observations(factors, generator)
        colour = torch.rand((x.shape[0], 3, 1, 1), device=x.device, generator=generator) * 0.5 + 0.5
        return x * colour


class Noisy(_Variant):
    name = "noisy"

    def observations(
        self, factors: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.base.observations(factors, generator)
        noise = torch.rand((x.shape[0], *self.image_shape), device=x.device, generator=generator)
        return (x + noise).clamp_(max=1.0)


def read_background(path: str | Path) -> np.ndarray:
    """The scream variant's background, (H, W, 3) uint8, fitted within 350 x 274 as the reference fits it.

    The image is fitted first and converted to RGB after, as the reference
    has Pillow do it: for a JPEG, `thumbnail` lets the decoder reduce the
    image, which a converted copy would not. Pillow versions differ in that
    reduction, so the patches match the reference's to within its rounding.
    """
    try:
        with Image.open(path) as image:
            image.thumbnail(BACKGROUND_FIT)
            rgb = np.array(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot be read as an image ({exc})") from None
    height, width = rgb.shape[:2]
    if min(height, width) <= PATCH:
        raise DataError(
            f"{path}: {width} x {height} pixels once fitted within {BACKGROUND_FIT[0]} x {BACKGROUND_FIT[1]}; "
            f"random {PATCH} x {PATCH} patches need more than {PATCH} each way"
        )
    return rgb


class Scream(_Variant):
    name = "scream"

    def __init__(self, base: GroundTruthData, background: np.ndarray) -> None:
        super().__init__(base)
        self._background = torch.as_tensor(background, device=self.device).permute(2, 0, 1).float() / 255.0
        self._span = torch.arange(PATCH, device=self.device)

    def observations(
        self, factors: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.base.observations(factors, generator)
        n, (height, width) = x.shape[0], self._background.shape[1:]
        # As the reference's randint(0, height - 64): the last row a patch may start at is height - 65.
        top = torch.randint(0, height - PATCH, (n,), device=x.device, generator=generator)
        left = torch.randint(0, width - PATCH, (n,), device=x.device, generator=generator)
        rows = (top[:, None] + self._span)[:, :, None]
        cols = (left[:, None] + self._span)[:, None, :]
        patches = self._background[:, rows, cols].permute(1, 0, 2, 3)
        colour = torch.rand((n, 3, 1, 1), device=x.device, generator=generator)
        background = (patches + colour) / 2
        return background + x * (1 - 2 * background)


def with_variant(base: GroundTruthData, variant: str, background: str | Path | None = None) -> GroundTruthData:
    """`base` as the `variant` makes it; `background` is the scream variant's image."""
    if variant == "none":
        return base
    if variant == "color":
        return Color(base)
    if variant == "noisy":
        return Noisy(base)
    if variant == "scream":
        if background is None:
            raise DataError("the scream variant needs a background image (data.background)")
        return Scream(base, read_background(background))
    raise DataError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


class GroundTruth(FactorGrid):
    """The factors `names` of `base` as the ground truth; the others vary at random in the observations."""

    complete_grid = True

    def __init__(self, base: GroundTruthData, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in base.factor_names]
        if unknown or not names or len(set(names)) != len(names):
            raise DataError(
                f"{base.description}: ground_truth {list(names)} must be distinct names among its factors "
                f"{list(base.factor_names)}" + (f" ({', '.join(unknown)} is not one)" if unknown else "")
            )
        if not base.complete_grid:
            raise DataError(
                f"{base.description}: ground_truth needs a full factor grid, to draw the other factors freely"
            )
        self.base = base
        self.device = base.device
        self.visible = [base.factor_names.index(n) for n in names]
        self.hidden = [k for k in range(len(base.factor_names)) if k not in self.visible]
        self.factor_names = tuple(names)
        self.factor_sizes = tuple(base.factor_sizes[k] for k in self.visible)
        self.image_shape = base.image_shape
        self.deterministic = base.deterministic and not self.hidden
        self.description = base.description + (f" (ground truth: {', '.join(names)})" if self.hidden else "")
        self._hidden_sizes = [base.factor_sizes[k] for k in self.hidden]
        # Column indices on the device: indexing with Python lists copies them there on every batch.
        self._visible_columns = torch.tensor(self.visible, dtype=torch.long, device=self.device)
        self._hidden_columns = torch.tensor(self.hidden, dtype=torch.long, device=self.device)

    def observations(
        self, factors: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        f = factor_tensor(factors, len(self.visible), self.device)
        full = torch.empty((f.shape[0], len(self.base.factor_sizes)), dtype=torch.long, device=self.device)
        full[:, self._visible_columns] = f
        if self.hidden:
            hidden = uniform_factors_torch(self._hidden_sizes, f.shape[0], generator, self.device)
            full[:, self._hidden_columns] = hidden
        return self.base.observations(full, generator)

