"""Bring your own data: an `.npz` of images, integer factor classes and factor names.

Arrays (a file written with `write` below, or `np.savez` by hand):

- `images`: (N, 64, 64) or (N, 64, 64, C), channels last, uint8 (0..255)
  or bool. Images whose values are all 0 and 1 are kept bit-packed, others
  one byte per value.
- `factor_classes`: (N, K) integers; factor k takes the classes 0..size_k-1,
  each present in some row.
- `factor_names`: (K,) strings, distinct.

The rows may come in any order. Each factor combination may have at most one
image. With every combination present the dataset gets every metric; with
some missing, BetaVAE and FactorVAE are refused (they need the full grid)
and the other metrics draw their factors from the rows that exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data import npz
from trainables.data.base import DataError
from trainables.data.stored import Headers, StoredImages, channels_first, grid_rows, pack_blocks

KEYS = ("images", "factor_classes", "factor_names")
IMAGE_SIZE = 64


def check_headers(path: str | Path) -> Headers:
    """Keys, shapes and dtypes from the headers, and the factor names (small); no image is read.

    Binary bool images are stored a bit a pixel; whether uint8 images hold only
    0 and 1 is known once they are read, so their `Headers.bits` is False.
    """
    found = npz.headers(path)
    npz.require_arrays(path, found, KEYS, "a dataset file")
    shape, dtype = found["images"]
    n = shape[0] if shape else 0
    if len(shape) not in (3, 4) or shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE) or n < 1 or dtype not in (np.uint8, bool):
        raise DataError(
            f"{path}: images is {dtype} {shape}; expected uint8 or bool (N, 64, 64) or (N, 64, 64, C), N >= 1"
        )
    channels = shape[3] if len(shape) == 4 else 1
    if channels < 1:
        raise DataError(f"{path}: images have {channels} channels")
    shape, dtype = found["factor_classes"]
    if len(shape) != 2 or shape[0] != n or shape[1] < 1 or not np.issubdtype(dtype, np.integer):
        raise DataError(f"{path}: factor_classes is {dtype} {shape}; expected integers ({n}, K) with K >= 1")
    k = shape[1]
    shape, dtype = found["factor_names"]
    if shape != (k,) or dtype.kind != "U":
        raise DataError(f"{path}: factor_names is {dtype} {shape}; expected ({k},) strings, one per factor")
    npz.require_complete(path, KEYS)
    names = tuple(str(s) for s in npz.read_small(path, "factor_names"))
    image_shape = (int(channels), IMAGE_SIZE, IMAGE_SIZE)
    return Headers(int(n), image_shape, bits=found["images"][1] == bool, factor_names=names)


def load(path: str | Path) -> StoredImages:
    path = Path(path)
    headers = check_headers(path)
    n, names, channels = headers.count, headers.factor_names, headers.image_shape[0]
    if len(set(names)) != len(names) or not all(names):
        raise DataError(f"{path}: factor_names {list(names)} must be distinct and non-empty")
    sizes, rows, classes = grid_rows(npz.read_small(path, "factor_classes"), f"{path}: factor_classes")
    row_items = channels * IMAGE_SIZE * IMAGE_SIZE
    binary = all(block.size == 0 or block.max() <= 1 for block in npz.stream_rows(path, "images"))
    pixels = pack_blocks(
        (channels_first(b).view(np.uint8) for b in npz.stream_rows(path, "images")),
        n,
        row_items,
        bits=binary,
        where=f"{path}: images",
    )
    return StoredImages(
        source=f"dataset file {path}",
        pixels=pixels,
        bits=binary,
        image_shape=headers.image_shape,
        factor_names=names,
        factor_sizes=sizes,
        rows=rows,
        classes=classes,
    )


def write(path: str | Path, images: np.ndarray, factor_classes: np.ndarray, factor_names: list[str]) -> Path:
    """A dataset file in this format (uncompressed: it is read in streamed blocks either way)."""
    with open(path, "wb") as f:
        np.savez(
            f,
            images=np.asarray(images),
            factor_classes=np.asarray(factor_classes),
            factor_names=np.asarray(factor_names, dtype=str),
        )
    return Path(path)
