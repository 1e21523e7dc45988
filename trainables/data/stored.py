"""File-backed datasets: images held once, packed, and unpacked only for the batch being built.

`StoredImages` is what a node holds of a dataset file: the pixels of every
image in one uint8 array (bit-packed when the images are binary: 368 MB for
the full dSprites instead of 2.9 GB), the factor grid, and where each grid
cell's image is (or, for SmallNORB, its several images, one drawn per
observation). It holds only numpy arrays, so `ray.put` stores it once per
node and every `ray.get` on that node returns read-only views of the same
shared memory (zero-copy); the sweep passes it to the trials with
`tune.with_parameters` (see `sweeper.run.datasets`). Outside Ray it is read
straight from the file. `Headers` is what a file's headers say before any
image is read, which is enough to know the bytes a node will hold.

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
from typing import NamedTuple

import numpy as np
import torch

from trainables.data.base import DataError, FactorGrid, factor_tensor

MAX_GRID_CELLS = 1 << 28  # a row table over a larger grid would not fit in memory


def row_bytes(items: int, bits: bool) -> int:
    """Bytes of one stored image of `items` pixel values: a bit each when binary, else a byte each."""
    return -(-items // 8) if bits else items


class Headers(NamedTuple):
    """What a dataset file's headers say, read before any image is.

    bits: the images are binary and will be stored a bit a pixel. A file
    whose headers cannot tell (your own uint8 images may hold only 0 and 1)
    says False, so `nbytes` is then an upper bound.
    """

    count: int  # images
    image_shape: tuple[int, int, int]  # (channels, 64, 64)
    bits: bool
    factor_names: tuple[str, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the stored images, which a node holds once (the factor tables add a few per image)."""
        return self.count * row_bytes(math.prod(self.image_shape), self.bits)


@dataclass(frozen=True, eq=False)
class StoredImages:
    """Images and factors of one dataset file, as a node holds them.

    pixels: (N, row_bytes) uint8; with `bits`, each image's C*H*W pixels in
      {0, 1} packed by `np.packbits` (first pixel in the high bit), otherwise
      one byte per pixel value, 0..255 meaning 0..1.
    rows: the row of every grid cell in row-major order, -1 where the file
      has no image for the cell; None when row i is cell i (the file is the
      full grid in row-major order, as dSprites is). Shape (cells, k) when
      every cell has k images that differ in a factor the file does not
      score (SmallNORB's instance): each observation draws one of the k.
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
    def deterministic(self) -> bool:
        """An observation is a function of its factors: one image per cell."""
        return self.rows is None or self.rows.ndim == 1

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.pixels, self.rows, self.classes) if a is not None)


def class_counts(classes: np.ndarray, where: str) -> tuple[int, ...]:
    """Each factor's number of classes, its classes being 0..size-1 with every one present in some row."""
    sizes = tuple(int(s) for s in classes.max(axis=0) + 1)
    if classes.min() < 0:
        raise DataError(f"{where}: factor classes must be >= 0, found {int(classes.min())}")
    for k, size in enumerate(sizes):
        present = np.unique(classes[:, k])
        if present.size != size:
            missing = sorted(set(range(size)) - set(present.tolist()))[:5]
            raise DataError(f"{where}: factor {k} has classes up to {size - 1} but none with class {missing}")
    return sizes


def grid_rows(classes: np.ndarray, where: str) -> tuple[tuple[int, ...], np.ndarray | None, np.ndarray | None]:
    """Factor sizes, row table and (for an incomplete grid) classes of the rows; refuses what no metric can use.

    Each factor's classes must be 0..size-1 with every class present, and no two
    rows may share a factor combination (an observation must be a function of
    its factors).
    """
    classes = np.asarray(classes)
    sizes = class_counts(classes, where)
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


def rows_per_cell(cells: np.ndarray, order: np.ndarray, sizes: tuple[int, ...], where: str) -> np.ndarray:
    """The (cells, k) row table of a file with k images in every grid cell, each cell's rows sorted by `order`.

    `cells` holds the grid cell of every row. A cell with more or fewer
    images than the others is refused: drawing one of a cell's images
    uniformly must give each image the same chance, as the reference's
    uniform draw of the unscored factor does.
    """
    counts = np.bincount(cells, minlength=math.prod(sizes))
    k = int(np.bincount(counts).argmax())  # the usual number of images a cell has
    odd = np.flatnonzero(counts != k)
    if k == 0 or odd.size:
        cell = int(odd[0]) if odd.size else 0
        combination = [int(c) for c in np.unravel_index(cell, sizes)]
        raise DataError(
            f"{where}: the factor classes {combination} have {int(counts[cell])} images where the others have "
            f"{k}; every factor combination needs the same number of images, one drawn per observation"
        )
    table = np.lexsort((order, cells)).reshape(len(counts), k)
    return table.astype(np.int32 if len(cells) < 2**31 else np.int64)


def channels_first(block: np.ndarray) -> np.ndarray:
    """(b, H, W) or channels-last (b, H, W, C) rows as (b, C, H, W), the layout a stored row holds."""
    return block[:, None] if block.ndim == 3 else np.ascontiguousarray(block.transpose(0, 3, 1, 2))


def pack_blocks(blocks: Iterable[np.ndarray], count: int, row_items: int, bits: bool, where: str) -> np.ndarray:
    """One (count, row_bytes) uint8 array from blocks of (b, row_items) uint8 rows, bit-packed when `bits`."""
    out = np.empty((count, row_bytes(row_items, bits)), dtype=np.uint8)
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

    def __init__(self, stored: StoredImages, device: torch.device | str = "cpu") -> None:
        self.stored = stored
        self.device = torch.device(device)
        self.factor_names = tuple(stored.factor_names)
        self.factor_sizes = tuple(int(s) for s in stored.factor_sizes)
        self.image_shape = tuple(int(s) for s in stored.image_shape)
        self.complete_grid = stored.complete_grid
        self.deterministic = stored.deterministic
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
        """The stored images of `factors`, (n, C, 64, 64) float in [0, 1].

        Where a cell has several images, `generator` draws one per observation.
        """
        f = factor_tensor(factors, len(self.factor_sizes), self.device)
        rows = (f * self._strides).sum(dim=1)
        if self._rows is not None and self._rows.ndim == 2:
            pick = torch.randint(0, self._rows.shape[1], rows.shape, device=self.device, generator=generator)
            rows = self._rows[rows, pick]
        elif self._rows is not None:
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
