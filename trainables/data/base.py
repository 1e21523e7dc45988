"""What every ground-truth dataset offers the trainer and the metrics, and the error a bad file raises.

Training draws factors on the device (`sample_factors_torch`) and renders them
(`observations`) so a step never waits on the host; the metrics draw factors
with numpy (`sample_factors`) and look codes up by `flat_index`. Two flags
tell the metrics what they may assume:

- `deterministic`: the observation is a function of its factors alone, so the
  code of a factor cell can be computed once and reused (the code cache of
  `trainables.evaluate`). Colour, noise and hidden factors make it False.
- `complete_grid`: every cell of the factor grid has an observation. The
  BetaVAE and FactorVAE scores fix one factor and draw the others freely, so
  they need it; the other metrics only need (observation, factors) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np
import torch

from trainables import factors as factor_math
from trainables.metrics import SPECS

# Metrics that draw factor vectors freely (one factor fixed) and so need every cell to exist.
FULL_GRID_METRICS: tuple[str, ...] = tuple(spec.name for spec in SPECS if spec.needs_full_grid)


class DataError(ValueError):
    """A dataset file that cannot be used as it is; the message names the file and the problem."""


class GroundTruthData(Protocol):
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    image_shape: tuple[int, int, int]  # (channels, 64, 64)
    deterministic: bool
    complete_grid: bool
    description: str
    device: torch.device

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def sample_factors_torch(self, n: int, generator: torch.Generator) -> torch.Tensor: ...

    def observations(
        self, factors: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...

    def flat_index(self, factors: np.ndarray) -> np.ndarray: ...


@lru_cache(maxsize=32)
def _class_counts(sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The factor sizes as a device tensor, made once: building it per batch would copy from
    the host, and a CUDA host-to-device copy makes the step wait for the GPU to drain."""
    return torch.tensor(sizes, device=device)


def uniform_factors_torch(
    sizes: Sequence[int], n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """n factor vectors, each factor uniform over its classes, drawn on `device`."""
    highs = _class_counts(tuple(int(s) for s in sizes), torch.device(device))
    u = torch.rand((n, len(sizes)), device=device, generator=generator)
    return (u * highs).long().clamp_max_(highs - 1)


def factor_tensor(factors: np.ndarray | torch.Tensor, n_factors: int, device: torch.device) -> torch.Tensor:
    """Factor classes as a long tensor on `device`, or a clear error for the wrong shape."""
    f = torch.as_tensor(factors, device=device).long()
    if f.ndim != 2 or f.shape[1] != n_factors:
        raise ValueError(f"factors must have shape (n, {n_factors}), got {tuple(f.shape)}")
    return f


class FactorGrid:
    """Factor sampling and cell indices from the factor sizes alone, for every dataset over a full grid.

    Each factor is uniform over its classes: with numpy for the metrics, and
    on the dataset's device for training (no host copy, see
    `uniform_factors_torch`). The class sets `factor_sizes` and `device`.
    """

    factor_sizes: tuple[int, ...]
    device: torch.device

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return factor_math.sample_factors(self.factor_sizes, n, rng)

    def sample_factors_torch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return uniform_factors_torch(self.factor_sizes, n, generator, self.device)

    def flat_index(self, factors: np.ndarray) -> np.ndarray:
        return factor_math.flat_index(factors, self.factor_sizes)


def unsupported_metrics(dataset: GroundTruthData, metrics: Sequence[str]) -> str | None:
    """Why `dataset` cannot give these metrics, or None when it can."""
    need = [m for m in metrics if m in FULL_GRID_METRICS]
    if need and not getattr(dataset, "complete_grid", True):
        return (
            f"{getattr(dataset, 'description', 'the dataset')}: its factor grid is not a full Cartesian product (some factor combinations "
            f"have no image), and {', '.join(need)} fix one factor and draw the others freely, so they need "
            f"every combination; drop them from eval.metrics or complete the grid"
        )
    return None
