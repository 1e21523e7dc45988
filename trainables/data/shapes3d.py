"""Shapes3D (Burgess and Kim, 2018): `3dshapes.h5` as DeepMind publishes it, or disentanglement_lib's npz of it.

`3dshapes.h5` (HDF5) holds `images` (480000, 64, 64, 3) uint8 and `labels`
(480000, 6) float64, the rows in row-major order of floor hue 10, wall hue
10, object hue 10, scale 8, shape 4, orientation 15. disentanglement_lib
reads an npz of the same data whose `images` has the grid as axes, (10, 10,
10, 8, 4, 15, 64, 64, 3), and `labels` (10, ..., 15, 6); either layout is
read, in either container.

The order is not taken on trust: the labels' distinct values per column give
the factor sizes, and each column must change along its own factor's axis
only, which is what "row-major in this order" means; a file in any other
order is refused rather than served with the wrong factors. A smaller grid
in the same format reads the same way (the tests write such files).

The 5.9 GB of images are read a block of rows at a time (HDF5 through h5py,
npz streamed) and copied channels-first into the stored array, so they are
never held twice.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from trainables.data import npz
from trainables.data.base import DataError
from trainables.data.stored import Headers, StoredImages, channels_first, pack_blocks

FACTOR_NAMES: tuple[str, ...] = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
KEYS = ("images", "labels")
IMAGE_SHAPE = (64, 64, 3)  # as stored: channels last
LABEL_DECIMALS = 6  # labels are compared after rounding, so float noise in a re-saved file is no new value
# The values DeepMind's labels take per factor (its README), for writing files in its layout.
LABEL_VALUES = (
    np.linspace(0, 0.9, 10),
    np.linspace(0, 0.9, 10),
    np.linspace(0, 0.9, 10),
    np.linspace(0.75, 1.25, 8),
    np.arange(4.0),
    np.linspace(-30, 30, 15),
)


def _is_hdf5(path: Path) -> bool:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if h5py.is_hdf5(path):
        return True
    if zipfile.is_zipfile(path):
        return False
    raise DataError(f"{path}: neither an HDF5 file (3dshapes.h5) nor an .npz")


def _hdf5_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    try:
        with h5py.File(path, "r") as f:
            return {key: (item.shape, item.dtype) for key, item in f.items() if isinstance(item, h5py.Dataset)}
    except OSError as exc:  # h5py's error for a damaged or truncated file
        raise DataError(f"{path}: cannot be read as an HDF5 file ({exc})") from None


def check_headers(path: str | Path) -> Headers:
    """Keys, shapes and dtypes from the headers alone."""
    path = Path(path)
    hdf5 = _is_hdf5(path)
    found = _hdf5_headers(path) if hdf5 else npz.headers(path)
    npz.require_arrays(path, found, KEYS, "a Shapes3D file")
    shape, dtype = found["images"]
    grid = shape[:-3]
    layouts = (1,) if hdf5 else (1, len(FACTOR_NAMES))  # disentanglement_lib's grid axes come in its npz only
    if shape[-3:] != IMAGE_SHAPE or dtype != np.uint8 or len(grid) not in layouts or not all(grid):
        raise DataError(
            f"{path}: images is {dtype} {shape}; expected uint8 (N, 64, 64, 3)"
            + ("" if hdf5 else " or the factor grid as axes, (10, 10, 10, 8, 4, 15, 64, 64, 3)")
        )
    labels_shape, labels_dtype = found["labels"]
    if labels_shape != (*grid, len(FACTOR_NAMES)) or not np.issubdtype(labels_dtype, np.floating):
        raise DataError(
            f"{path}: labels is {labels_dtype} {labels_shape}; expected floating {(*grid, len(FACTOR_NAMES))}, "
            "a row of factor values per image"
        )
    if not hdf5:  # HDF5 checks its own length when the file is opened
        npz.require_complete(path, KEYS)
    return Headers(math.prod(grid), (3, 64, 64), bits=False, factor_names=FACTOR_NAMES)


def factor_sizes(labels: np.ndarray, where: str) -> tuple[int, ...]:
    """The grid the labels (N, 6) span, if they enumerate it once in row-major order of FACTOR_NAMES."""
    labels = np.round(labels, LABEL_DECIMALS)
    sizes = tuple(len(np.unique(labels[:, k])) for k in range(len(FACTOR_NAMES)))
    cells = math.prod(sizes)
    if cells != len(labels):
        raise DataError(
            f"{where}: {len(labels):,} images, but the labels take {' x '.join(map(str, sizes))} = {cells:,} "
            "combinations of values; a Shapes3D file holds every combination once"
        )
    grid = labels.reshape(*sizes, len(FACTOR_NAMES))
    for k, name in enumerate(FACTOR_NAMES):
        column = grid[..., k]
        along_own_axis = column[tuple(slice(None) if axis == k else slice(0, 1) for axis in range(len(sizes)))]
        if not np.array_equal(column, np.broadcast_to(along_own_axis, column.shape)):
            raise DataError(
                f"{where}: labels column {k} ({name}) changes along another factor's axis: the rows are not in "
                f"row-major order of {', '.join(FACTOR_NAMES)}"
            )
    return sizes


def grid_labels(sizes: tuple[int, ...]) -> np.ndarray:
    """The labels (N, 6) of the grid `sizes` in row-major order, each factor taking its first published values.

    For tests and benchmarks, which write files in the published layout (the
    real file is 5.9 GB and cannot be downloaded everywhere).
    """
    classes = np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), axis=1)
    return np.column_stack([LABEL_VALUES[k][classes[:, k]] for k in range(len(FACTOR_NAMES))])


def _read_labels(path: Path, hdf5: bool) -> np.ndarray:
    if not hdf5:
        return npz.read_small(path, "labels")
    try:
        with h5py.File(path, "r") as f:
            return f["labels"][()]
    except OSError as exc:
        raise DataError(f"{path}: array 'labels' cannot be read ({exc})") from None


def _hdf5_rows(path: Path, key: str) -> Iterator[np.ndarray]:
    """The HDF5 dataset `key` a block of rows at a time."""
    try:
        with h5py.File(path, "r") as f:
            dataset = f[key]
            block = max(1, npz.STREAM_BYTES // math.prod(IMAGE_SHAPE))
            for start in range(0, len(dataset), block):
                yield dataset[start : start + block]
    except OSError as exc:
        raise DataError(f"{path}: array {key!r} cannot be read ({exc})") from None


def load(path: str | Path) -> StoredImages:
    """The file's images, channels-first, with the grid its labels span; checked throughout."""
    path = Path(path)
    headers = check_headers(path)
    hdf5 = _is_hdf5(path)
    labels = _read_labels(path, hdf5).reshape(-1, len(FACTOR_NAMES))
    sizes = factor_sizes(labels, f"{path}: labels")
    blocks = _hdf5_rows(path, "images") if hdf5 else npz.stream_rows(path, "images", row_ndim=len(IMAGE_SHAPE))
    pixels = pack_blocks(
        (channels_first(b) for b in blocks), headers.count, math.prod(IMAGE_SHAPE), bits=False, where=f"{path}: images"
    )
    return StoredImages(
        source=f"Shapes3D file {path}",
        pixels=pixels,
        bits=False,
        image_shape=headers.image_shape,
        factor_names=FACTOR_NAMES,
        factor_sizes=sizes,
    )
