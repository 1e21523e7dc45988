"""The original dSprites file (`dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`), checked and bit-packed.

The file holds `imgs` (N, 64, 64) uint8 in {0, 1}, `latents_classes` and
`latents_values` (N, 6) over (color, shape, scale, orientation, posX, posY),
and a pickled `metadata` dict, which is never unpickled (only its presence is
checked). The images are in row-major order of the factor grid, so row i is
grid cell i; that order is checked, as are shapes and dtypes. The constant
colour factor (one class) is dropped: the dataset has the five factors of the
procedural one. Smaller grids in the same format (fewer scales, positions...)
are read the same way, which is how the tests make files on the fly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data import npz
from trainables.data.base import DataError
from trainables.data.procedural import FACTOR_NAMES, IMAGE_SIZE
from trainables.data.stored import Headers, StoredImages, pack_blocks

KEYS = ("imgs", "latents_classes", "latents_values", "metadata")
LATENT_NAMES = ("color", *FACTOR_NAMES)


def check_headers(path: str | Path) -> Headers:
    """Keys, shapes and dtypes from the headers alone."""
    found = npz.headers(path)
    npz.require_arrays(path, found, KEYS, "a dSprites file")
    shape, dtype = found["imgs"]
    n = shape[0] if shape else 0
    if len(shape) != 3 or shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or dtype != np.uint8 or n < 1:
        raise DataError(f"{path}: imgs is {dtype} {shape}; expected uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}), N >= 1")
    for key, kind in (("latents_classes", "integer"), ("latents_values", "floating")):
        shape, dtype = found[key]
        ok = np.issubdtype(dtype, np.integer if kind == "integer" else np.floating)
        if shape != (n, len(LATENT_NAMES)) or not ok:
            raise DataError(f"{path}: {key} is {dtype} {shape}; expected {kind} ({n}, {len(LATENT_NAMES)})")
    npz.require_complete(path, ("imgs", "latents_classes", "latents_values"))  # metadata is never read
    return Headers(int(n), (1, IMAGE_SIZE, IMAGE_SIZE), bits=True, factor_names=FACTOR_NAMES)


def check_grid(classes: np.ndarray, path: str | Path) -> tuple[int, ...]:
    """The grid sizes of (color, shape, ...) if the rows are its full row-major enumeration."""
    if classes.min() < 0:
        raise DataError(f"{path}: latents_classes holds negative classes")
    sizes = tuple(int(s) for s in classes.max(axis=0) + 1)
    cells = int(np.prod(sizes, dtype=np.int64))
    if cells != len(classes):
        raise DataError(
            f"{path}: factor grid order: {len(classes)} images but the classes span a grid of "
            f"{' x '.join(map(str, sizes))} = {cells} cells; a dSprites file holds every cell once"
        )
    expected = np.stack(np.unravel_index(np.arange(cells), sizes), axis=1)
    wrong = np.flatnonzero((classes != expected).any(axis=1))
    if wrong.size:
        i = int(wrong[0])
        raise DataError(
            f"{path}: factor grid order: row {i} has classes {classes[i].tolist()}, expected "
            f"{expected[i].tolist()} (rows must enumerate {', '.join(LATENT_NAMES)} in row-major order)"
        )
    if sizes[0] != 1:
        raise DataError(f"{path}: the colour factor has {sizes[0]} classes; dSprites has one (white)")
    return sizes


def load(path: str | Path) -> StoredImages:
    """The file's images, bit-packed, with the five-factor grid (colour dropped); checked throughout."""
    path = Path(path)
    n = check_headers(path).count
    sizes = check_grid(npz.read_small(path, "latents_classes"), path)
    pixels = pack_blocks(npz.stream_rows(path, "imgs"), n, IMAGE_SIZE * IMAGE_SIZE, bits=True, where=f"{path}: imgs")
    return StoredImages(
        source=f"dSprites file {path}",
        pixels=pixels,
        bits=True,
        image_shape=(1, IMAGE_SIZE, IMAGE_SIZE),
        factor_names=FACTOR_NAMES,
        factor_sizes=sizes[1:],
    )


def write(path: str | Path, images: np.ndarray, classes: np.ndarray, compress: bool = True) -> Path:
    """A file in the original format from images (N, 64, 64) and classes (N, 6) over LATENT_NAMES.

    For tests and benchmarks (the real file cannot be downloaded everywhere).
    `latents_values` are the classes as floats and `metadata` a small dict: the
    reader needs neither.
    """
    save = np.savez_compressed if compress else np.savez
    metadata = np.array({"latents_names": LATENT_NAMES}, dtype=object)
    with open(path, "wb") as f:
        save(f, imgs=images, latents_classes=classes, latents_values=classes.astype(np.float64), metadata=metadata)
    return Path(path)
