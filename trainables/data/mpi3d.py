"""MPI3D (Gondal et al., 2019): the npz files of its authors, `images` (N, 64, 64, 3) uint8 and nothing else.

The files carry no labels: the rows are the factor grid in row-major order,
and the grid is the subset's (`data.subset`):

- toy, realistic, real: object colour 6, object shape 6, object size 2,
  camera height 3, background colour 3, horizontal axis 40, vertical axis 40
  (1,036,800 images). disentanglement_lib's 4 x 4 for the first two factors
  of toy and realistic matches an earlier release, not the files published
  now, which is why an image count that does not fit the subset's grid is
  refused, naming the grid that was expected.
- real_complex: 4, 4, 2, 3, 3, 40, 40 (460,800 images).

At 12.7 GB of pixels the images are streamed a block of rows at a time into
the stored array (channels-first), never whole twice.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainables.data import npz
from trainables.data.base import DataError
from trainables.data.stored import Headers, StoredImages, channels_first, pack_blocks

FACTOR_NAMES: tuple[str, ...] = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
SUBSETS: dict[str, tuple[int, ...]] = {
    "toy": (6, 6, 2, 3, 3, 40, 40),
    "realistic": (6, 6, 2, 3, 3, 40, 40),
    "real": (6, 6, 2, 3, 3, 40, 40),
    "real_complex": (4, 4, 2, 3, 3, 40, 40),
}
IMAGE_SHAPE = (64, 64, 3)  # as stored: channels last


def check_headers(path: str | Path, subset: str) -> Headers:
    """The `images` header against the subset's grid; nothing else is read."""
    found = npz.headers(path)
    npz.require_arrays(path, found, ("images",), "an MPI3D file")
    shape, dtype = found["images"]
    if len(shape) != 4 or shape[1:] != IMAGE_SHAPE or dtype != np.uint8:
        raise DataError(f"{path}: images is {dtype} {shape}; expected uint8 (N, 64, 64, 3)")
    grid = SUBSETS[subset]
    if shape[0] != math.prod(grid):
        raise DataError(
            f"{path}: images holds {shape[0]:,} images; the {subset} subset's grid "
            f"{' x '.join(map(str, grid))} ({', '.join(FACTOR_NAMES)}) has {math.prod(grid):,}. "
            "Is data.subset the subset this file holds?"
        )
    npz.require_complete(path, ("images",))
    return Headers(shape[0], (3, 64, 64), bits=False, factor_names=FACTOR_NAMES)


def load(path: str | Path, subset: str) -> StoredImages:
    path = Path(path)
    headers = check_headers(path, subset)
    pixels = pack_blocks(
        (channels_first(b) for b in npz.stream_rows(path, "images")),
        headers.count,
        math.prod(IMAGE_SHAPE),
        bits=False,
        where=f"{path}: images",
    )
    return StoredImages(
        source=f"MPI3D {subset} file {path}",
        pixels=pixels,
        bits=False,
        image_shape=headers.image_shape,
        factor_names=FACTOR_NAMES,
        factor_sizes=SUBSETS[subset],
    )
