"""Cars3D (Reed et al., 2015): the folder of `.mat` files, one per car, from `nips2015-analogy-data.tar.gz`.

`data.path` is the archive's `data/cars` folder. Each `car_*_mesh.mat`
(MATLAB v5, read with scipy) holds `im`, (128, 128, 3, 24, 4) uint8: RGB
views at 24 azimuths (axis 3) and 4 elevations (axis 4). As in
disentanglement_lib, each view is resized to 64 x 64 (`resize`, Pillow's
Lanczos) and the factors are elevation 4, azimuth 24 and object, one class
per car (183 in the published folder), in that row-major order. The
reference numbers the cars in the order the folder lists them, which the
file system chooses; here they are numbered in sorted file-name order.

Every file's variables (name, shape, class) are checked, and its size
against the lengths its elements declare (a file cut short is refused),
before anything is allocated.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import scipy.io

from trainables.data.base import DataError
from trainables.data.resize import SIZE, lanczos_64
from trainables.data.stored import Headers, StoredImages, channels_first

FACTOR_NAMES: tuple[str, ...] = ("elevation", "azimuth", "object")
VIEWS_SHAPE = (128, 128, 3, 24, 4)  # height, width, RGB, azimuth, elevation
MAT_HEADER_BYTES = 128
COMPRESSED = 15  # miCOMPRESSED: a zlib-compressed element, not padded to 8 bytes


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; Cars3D's data.path is the folder of its .mat files (data/cars)")
    files = sorted(folder.glob("*.mat"))
    if not files:
        raise DataError(f"{folder}: holds no .mat file; Cars3D's data.path is the archive's data/cars folder")
    return files


def _check_length(path: Path) -> None:
    """Walk the file's top-level elements by their tags: the last must end within the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(MAT_HEADER_BYTES)
        order = {b"IM": "<", b"MI": ">"}.get(header[126:128])
        if len(header) < MAT_HEADER_BYTES or order is None:
            raise DataError(f"{path}: not a MATLAB v5 .mat file")
        at = MAT_HEADER_BYTES
        while at < size:
            f.seek(at)
            tag = f.read(8)
            kind, length = struct.unpack(f"{order}II", tag) if len(tag) == 8 else (0, size)
            at += 8 + (length if kind == COMPRESSED else -(-length // 8) * 8)
    if at > size:
        raise DataError(f"{path}: {size:,} bytes, but its elements declare {at:,} (the file is truncated)")


def _check_views(path: Path) -> None:
    try:
        variables = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(path)}
    except Exception as exc:  # noqa: BLE001 - scipy's parser fails in many ways on a damaged file
        raise DataError(f"{path}: cannot be read as a .mat file ({exc})") from None
    if "im" not in variables:
        raise DataError(f"{path}: no variable 'im' (it holds {', '.join(sorted(variables)) or 'nothing'})")
    shape, kind = variables["im"]
    if shape != VIEWS_SHAPE or kind != "uint8":
        raise DataError(f"{path}: im is {kind} {shape}; expected uint8 {VIEWS_SHAPE}")
    _check_length(path)


def check_headers(folder: str | Path) -> Headers:
    files = _files(Path(folder))
    for path in files:
        _check_views(path)
    views = math.prod(VIEWS_SHAPE[3:])
    return Headers(views * len(files), (3, SIZE, SIZE), bits=False, factor_names=FACTOR_NAMES)


def _car_views(path: Path) -> np.ndarray:
    """One car's 96 views resized, (elevation 4, azimuth 24, 3 * 64 * 64) channels-first."""
    try:
        views = scipy.io.loadmat(path, variable_names=["im"])["im"]
    except Exception as exc:  # noqa: BLE001 - as in _check_views
        raise DataError(f"{path}: cannot be read as a .mat file ({exc})") from None
    azimuths, elevations = VIEWS_SHAPE[3:]
    by_view = views.transpose(4, 3, 0, 1, 2).reshape(elevations * azimuths, *VIEWS_SHAPE[:3])
    return channels_first(lanczos_64(by_view)).reshape(elevations, azimuths, -1)


def load(folder: str | Path) -> StoredImages:
    folder = Path(folder)
    headers = check_headers(folder)
    files = _files(folder)
    azimuths, elevations = VIEWS_SHAPE[3:]
    grid = np.empty((elevations, azimuths, len(files), math.prod(headers.image_shape)), dtype=np.uint8)
    for car, path in enumerate(files):
        grid[:, :, car] = _car_views(path)
    pixels = grid.reshape(headers.count, -1)
    pixels.setflags(write=False)
    return StoredImages(
        source=f"Cars3D {folder}",
        pixels=pixels,
        bits=False,
        image_shape=headers.image_shape,
        factor_names=FACTOR_NAMES,
        factor_sizes=(elevations, azimuths, len(files)),
    )
