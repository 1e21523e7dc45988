"""File-backed datasets: images held once, packed, and unpacked only for the batch being built.

`StoredImages` is what a node holds of a dataset file: the pixels of every
image in one uint8 array (bit-packed when the images are binary: 368 MB for
the full dSprites instead of 2.9 GB), the factor grid, and where each grid
cell's image is. It holds only numpy arrays, so `ray.put` stores it once per
node and every `ray.get` on that node returns read-only views of the same
shared memory (zero-copy); the sweep passes it to the trials with
`tune.with_parameters` (see `sweeper.run.datasets`). Outside Ray it is read
straight from the file.

`StoredDataset` serves a `StoredImages` through the ground-truth interface on
a device. On the CPU it indexes the shared array in place (no copy); on a GPU
the packed array is copied to the GPU once per worker process, so a batch is
gathered and unpacked there and a step never waits on the host.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from trainables.data.base import DataError, FactorGrid, factor_tensor

MAX_GRID_CELLS = 1 << 28  # a row table over a larger grid would not fit in memory


@dataclass(frozen=True, eq=False)
class StoredImages:
    """Images and factors of one dataset file, as a node holds them.

    pixels: (N, row_bytes) uint8; with `bits`, each image's C*H*W pixels in
      {0, 1} packed by `np.packbits` (first pixel in the high bit), otherwise
      one byte per pixel value, 0..255 meaning 0..1.
    rows: the row of every grid cell in row-major order, -1 where the file
      has no image for the cell; None when row i is cell i (the file is the
      full grid in row-major order, as dSprites is).
    classes: (N, K) factor classes of the rows; kept only for an incomplete
      grid, whose factors are drawn from the rows that exist.
    """

    source: str  # what and where, for messages: "dSprites file /data/dsprites.npz"
    pixels: np.ndarray
    bits: bool
    image_shape: tuple[int, int, int]
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    rows: np.ndarray | None = None
    classes: np.ndarray | None = None

    @property
    def complete_grid(self) -> bool:
        return self.rows is None or bool((self.rows >= 0).all())

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.pixels, self.rows, self.classes) if a is not None)


def grid_rows(classes: np.ndarray, where: str) -> tuple[tuple[int, ...], np.ndarray | None, np.ndarray | None]:
    """Factor sizes, row table and (for an incomplete grid) classes of the rows; refuses what no metric can use.

    Each factor's classes must be 0..size-1 with every class present, and no two
    rows may share a factor combination (an observation must be a function of
    its factors).
    """
    classes = np.asarray(classes)
    sizes = tuple(int(s) for s in classes.max(axis=0) + 1)
    if classes.min() < 0:
        raise DataError(f"{where}: factor classes must be >= 0, found {int(classes.min())}")
    for k, size in enumerate(sizes):
        present = np.unique(classes[:, k])
        if present.size != size:
            missing = sorted(set(range(size)) - set(present.tolist()))[:5]
            raise DataError(f"{where}: factor {k} has classes up to {size - 1} but none with class {missing}")
    cells = math.prod(sizes)
    if cells > MAX_GRID_CELLS:
        raise DataError(f"{where}: the factor grid {sizes} has {cells} cells, more than {MAX_GRID_CELLS}")
    flat = np.ravel_multi_index(tuple(classes.T.astype(np.int64)), sizes)
    if flat.size == cells and np.array_equal(flat, np.arange(cells)):
        return sizes, None, None
    order = np.argsort(flat, kind="stable")
    same = np.flatnonzero(flat[order][1:] == flat[order][:-1])
    if same.size:
        a, b = order[same[0]], order[same[0] + 1]
        raise DataError(
            f"{where}: rows {a} and {b} have the same factor classes {classes[a].tolist()}; "
            "each factor combination needs exactly one image"
        )
    rows = np.full(cells, -1, dtype=np.int32 if len(flat) < 2**31 else np.int64)
    rows[flat] = np.arange(len(flat))
    complete = len(flat) == cells
    return sizes, rows, None if complete else classes.astype(np.int64)


def pack_blocks(blocks: Iterable[np.ndarray], count: int, row_items: int, bits: bool, where: str) -> np.ndarray:
    """One (count, row_bytes) uint8 array from blocks of (b, row_items) uint8 rows, bit-packed when `bits`."""
    row_bytes = -(-row_items // 8) if bits else row_items
    out = np.empty((count, row_bytes), dtype=np.uint8)
    at = 0
    for block in blocks:
        flat = block.reshape(block.shape[0], row_items)
        if bits:
            if flat.size and flat.max() > 1:
                raise DataError(f"{where}: rows {at}..{at + len(flat) - 1} hold values other than 0 and 1")
            flat = np.packbits(flat.astype(np.uint8, copy=False), axis=1)
        out[at : at + len(flat)] = flat
        at += len(flat)
    if at != count:
        raise DataError(f"{where}: {at} image rows read, {count} expected")
    out.setflags(write=False)
    return out


class StoredDataset(FactorGrid):
    """A `StoredImages` served through the ground-truth interface on `device`."""

    deterministic = True

    def __init__(self, stored: StoredImages, device: torch.device | str = "cpu") -> None:
        self.stored = stored
        self.device = torch.device(device)
        self.factor_names = tuple(stored.factor_names)
        self.factor_sizes = tuple(int(s) for s in stored.factor_sizes)
        self.image_shape = tuple(int(s) for s in stored.image_shape)
        self.complete_grid = stored.complete_grid
        self.description = stored.source
        self._pixels = _tensor(stored.pixels, self.device)
        self._rows = None if stored.rows is None else _tensor(stored.rows, self.device).long()
        self._classes = None if stored.classes is None else torch.as_tensor(stored.classes, device=self.device)
        strides = np.cumprod((1,) + self.factor_sizes[:0:-1])[::-1].copy()
        self._strides = torch.as_tensor(strides, device=self.device)
        self._shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=self.device)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform over the grid when it is complete, else uniform over the file's rows."""
        if self.stored.classes is None:
            return super().sample_factors(n, rng)
        return self.stored.classes[rng.integers(0, len(self.stored.classes), size=int(n))]

    def sample_factors_torch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self._classes is None:
            return super().sample_factors_torch(n, generator)
        pick = torch.randint(0, len(self._classes), (n,), device=self.device, generator=generator)
        return self._classes[pick]

    def observations(
        self, factors: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The stored images of `factors`, (n, C, 64, 64) float in [0, 1]; `generator` is unused."""
        f = factor_tensor(factors, len(self.factor_sizes), self.device)
        rows = (f * self._strides).sum(dim=1)
        if self._rows is not None:
            rows = self._rows[rows]
            # Factors drawn on the device come from the file's rows; checking them would make
            # every training step wait for the GPU, so only factors from outside are checked.
            if self.stored.classes is not None and not torch.is_tensor(factors) and bool((rows < 0).any()):
                missing = f[rows < 0][0].tolist()
                raise ValueError(f"{self.description}: no image has the factor classes {missing}")
        packed = self._pixels[rows]
        n, shape = f.shape[0], (f.shape[0], *self.image_shape)
        if not self.stored.bits:
            return packed.reshape(shape).float().div_(255.0)
        unpacked = (packed.unsqueeze(-1) >> self._shifts) & 1
        return unpacked.reshape(n, -1)[:, : math.prod(self.image_shape)].reshape(shape).float()



def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor over `array`: the same memory on the CPU (read-only, never written), a copy on a GPU."""
    with warnings.catch_warnings():
        # Arrays from Ray's object store are read-only; the tensor only ever reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device)
