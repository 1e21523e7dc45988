"""Procedural dSprites: the exact factor grid of the original, rendered here.

The original file cannot be fetched on every machine, and a trial should not
carry 737280 images around, so the dataset is a function of its factors: 720
base sprites (3 shapes x 6 scales x 40 orientations) are rendered once, and an
observation is a base sprite placed at its (posX, posY) by integer
translation. Whole batches are built with tensor indexing on the target
device, so training needs no loader, no per-sample Python and no host copy.
The metrics use the same object through `sample_factors` and `observations`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from trainables.data.base import FactorGrid, factor_tensor

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
IMAGE_SIZE = 64
SPRITE_SIZE = 32  # base sprite canvas; positions move its corner over 0..31
SUPERSAMPLE = 4  # sub-pixel samples per axis; a pixel is on when half its area is inside
HALF_EXTENT = 10.0  # half width in pixels of a scale-1.0 sprite

SCALES = np.linspace(0.5, 1.0, FACTOR_SIZES[1])
ORIENTATIONS = np.linspace(0.0, 2.0 * math.pi, FACTOR_SIZES[2])  # both ends included, as in dSprites
POSITIONS = np.linspace(0.0, 1.0, FACTOR_SIZES[3])


def _inside(shape: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Membership test in the unit frame of each shape (square, ellipse, heart)."""
    if shape == 0:
        return (np.abs(x) <= 0.85) & (np.abs(y) <= 0.85)
    if shape == 1:
        return (x / 1.0) ** 2 + (y / 0.5) ** 2 <= 1.0
    # Heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, pointing down, recentred and shrunk to fit.
    hx, hy = x * 1.25, -(y * 1.25) + 0.15
    return (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0


def render_sprites(shape: int, scale: float, orientations: np.ndarray) -> np.ndarray:
    """Binary SPRITE_SIZE x SPRITE_SIZE sprites, centred, one per orientation."""
    offsets = (np.arange(SPRITE_SIZE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - SPRITE_SIZE / 2
    py, px = np.meshgrid(offsets, offsets, indexing="ij")
    # Rotate the sample points by -orientation, which rotates the shape by +orientation.
    cos = np.cos(orientations)[:, None, None]
    sin = np.sin(orientations)[:, None, None]
    ux = (cos * px + sin * py) / (HALF_EXTENT * scale)
    uy = (-sin * px + cos * py) / (HALF_EXTENT * scale)
    fine = _inside(shape, ux, uy).astype(np.float32)
    shape_ = (len(orientations), SPRITE_SIZE, SUPERSAMPLE, SPRITE_SIZE, SUPERSAMPLE)
    coverage = fine.reshape(shape_).mean(axis=(2, 4))
    return (coverage >= 0.5).astype(np.uint8)


@lru_cache(maxsize=1)
def base_sprites() -> np.ndarray:
    """All 720 base sprites, (3, 6, 40, 32, 32) uint8; rendered once per process."""
    out = np.empty(FACTOR_SIZES[:3] + (SPRITE_SIZE, SPRITE_SIZE), dtype=np.uint8)
    for s in range(FACTOR_SIZES[0]):
        for c, scale in enumerate(SCALES):
            out[s, c] = render_sprites(s, float(scale), ORIENTATIONS)
    out.setflags(write=False)
    return out


class ProceduralDSprites(FactorGrid):
    """Ground-truth dataset with the dSprites factor grid, rendered on demand.

    Implements the interface every dataset shares (`trainables.data.base.GroundTruthData`):
    observations are float tensors (n, 1, 64, 64) in {0, 1} on `device`, a
    function of their factors alone.
    """

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    image_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    deterministic = True  # an observation is a function of its factors: the metrics may cache codes per cell
    complete_grid = True  # every cell of the factor grid has an observation
    description = "procedural dSprites"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        sprites = torch.tensor(base_sprites())
        # Flattened sprite table indexed by (shape, scale, orientation).
        self._sprites = sprites.reshape(-1, SPRITE_SIZE, SPRITE_SIZE).to(self.device, torch.float32)
        self._span = torch.arange(SPRITE_SIZE, device=self.device)

    def observations(
        self, factors: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The images of `factors`; `generator` is unused (nothing here is random)."""
        f = factor_tensor(factors, len(self.factor_sizes), self.device)
        n = f.shape[0]
        sprite = (f[:, 0] * FACTOR_SIZES[1] + f[:, 1]) * FACTOR_SIZES[2] + f[:, 2]
        # posX moves the sprite right, posY moves it down, one pixel per class.
        rows = (f[:, 4, None] + self._span)[:, :, None]
        cols = (f[:, 3, None] + self._span)[:, None, :]
        images = torch.zeros((n, IMAGE_SIZE, IMAGE_SIZE), device=self.device)
        images[torch.arange(n, device=self.device)[:, None, None], rows, cols] = self._sprites[sprite]
        return images.unsqueeze(1)


