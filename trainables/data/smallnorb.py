"""SmallNORB (LeCun et al., 2004): the six binary matrix files of its authors, in one folder (`data.path`).

`smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat` and
`smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat`, as published
(gzipped, `.mat.gz`) or unpacked. Despite the name they are not MATLAB files
but NORB binary matrices: a little-endian int32 magic number naming the
element type, an int32 number of dimensions, the dimensions (at least three
written), then the elements. `-dat` holds (N, 2, 96, 96) bytes (a stereo
pair), `-cat` (N,) int32 categories, `-info` (N, 4) int32 instance,
elevation, azimuth (0, 2, ..., 34) and lighting. Every header is checked,
and each file's size against it, before anything is allocated.

As in disentanglement_lib, both splits are read, training first; channel 0
of each pair is resized to 64 x 64 (`resize`, the reference's Lanczos); the
factors are category 5, elevation 9, azimuth 18 (the stored value halved)
and lighting 6; the instance (10 per category) is not a factor: each factor
combination has one image per instance, and an observation draws one of
them (`StoredImages.rows` with a column per image). A smaller grid in the
same format reads the same way; every combination must have the same number
of images.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from trainables.data.base import DataError
from trainables.data.resize import SIZE, lanczos_64
from trainables.data.stored import Headers, StoredImages, class_counts, pack_blocks, rows_per_cell

FACTOR_NAMES: tuple[str, ...] = ("category", "elevation", "azimuth", "lighting")
SPLITS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
ELEMENT_TYPES = {  # magic number -> element type, from the dataset's page
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
    0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C55: np.dtype("u1"),
    0x1E3D4C56: np.dtype("<i2"),
}
# What each kind of file holds: element type and the dimensions after the first (the image count).
CONTENT = {"dat": (np.dtype("u1"), (2, 96, 96)), "cat": (np.dtype("<i4"), ()), "info": (np.dtype("<i4"), (4,))}
MAX_DIMENSIONS = 16
READ_IMAGES = 2048  # stereo pairs read and resized at a time


class Matrix(NamedTuple):
    """A binary matrix file as its header describes it."""

    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]
    data_offset: int  # header bytes


@contextmanager
def _open(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes (unpacked if gzipped); any failure to read them is a DataError naming it."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            yield f
    except (OSError, EOFError, zlib.error) as exc:  # gzip's own errors for a damaged file among them
        raise DataError(f"{path}: cannot be read ({exc})") from None


def _stored_bytes(path: Path) -> int:
    """The bytes the file holds once unpacked: its size, or a gzip file's own record of it (modulo 2**32)."""
    if path.suffix != ".gz":
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(-4, 2)
        return struct.unpack("<I", f.read(4))[0]


def _file(folder: Path, split: str, kind: str) -> Path:
    name = f"smallnorb-{split}-{kind}.mat"
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: no {name} (nor {name}.gz); a SmallNORB folder holds the six files of both splits")


def _matrix_header(path: Path) -> Matrix:
    """The header of a binary matrix file, checked against the file's size."""
    with _open(path) as f:
        head = f.read(8)
        magic, ndim = struct.unpack("<ii", head) if len(head) == 8 else (None, 0)
        if magic not in ELEMENT_TYPES:
            known = ", ".join(f"{m:#x}" for m in ELEMENT_TYPES)
            found = "too short for one" if magic is None else f"magic number {magic:#x}"
            raise DataError(f"{path}: not a NORB binary matrix: {found} (known: {known})")
        if not 1 <= ndim <= MAX_DIMENSIONS:
            raise DataError(f"{path}: header declares {ndim} dimensions; expected 1 to {MAX_DIMENSIONS}")
        written = max(3, ndim)
        dims = f.read(4 * written)
    if len(dims) != 4 * written:
        raise DataError(f"{path}: truncated inside its header")
    shape = struct.unpack(f"<{ndim}i", dims[: 4 * ndim])
    dtype = ELEMENT_TYPES[magic]
    offset = 8 + 4 * written
    declared = offset + math.prod(shape) * dtype.itemsize
    stored = _stored_bytes(path)
    if min(shape) < 0 or stored != (declared % 2**32 if path.suffix == ".gz" else declared):
        raise DataError(
            f"{path}: holds {stored:,} bytes, its header declares {dtype} {shape} = {declared:,} "
            "(the file is truncated or damaged)"
        )
    return Matrix(path, dtype, shape, offset)


def _split_headers(folder: Path, split: str) -> dict[str, Matrix]:
    """The three files of a split, each holding what its kind holds, for the same number of images."""
    matrices = {kind: _matrix_header(_file(folder, split, kind)) for kind in CONTENT}
    count = matrices["dat"].shape[0]
    for kind, (dtype, rest) in CONTENT.items():
        matrix = matrices[kind]
        expected = (count, *rest)
        if matrix.dtype != dtype or matrix.shape != expected or count < 1:
            raise DataError(
                f"{matrix.path}: holds {matrix.dtype} {matrix.shape}; a SmallNORB -{kind} file of this split "
                f"holds {dtype} {expected}"
            )
    return matrices


def _headers(folder: Path) -> list[dict[str, Matrix]]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; SmallNORB's data.path is the folder of its six files")
    return [_split_headers(folder, split) for split in SPLITS]


def check_headers(folder: str | Path) -> Headers:
    count = sum(split["dat"].shape[0] for split in _headers(Path(folder)))
    return Headers(count, (1, SIZE, SIZE), bits=False, factor_names=FACTOR_NAMES)


def _elements(matrix: Matrix) -> np.ndarray:
    """A small matrix (-cat, -info) read whole."""
    with _open(matrix.path) as f:
        f.seek(matrix.data_offset)
        data = f.read()
    return np.frombuffer(data, dtype=matrix.dtype).reshape(matrix.shape)


def _left_images(matrix: Matrix) -> Iterator[np.ndarray]:
    """Channel 0 of every stereo pair, resized to 64 x 64, a block at a time."""
    pair_bytes = math.prod(matrix.shape[1:])
    with _open(matrix.path) as f:
        f.seek(matrix.data_offset)
        for start in range(0, matrix.shape[0], READ_IMAGES):
            take = min(READ_IMAGES, matrix.shape[0] - start)
            raw = f.read(take * pair_bytes)
            if len(raw) != take * pair_bytes:
                raise DataError(f"{matrix.path}: truncated at image {start + len(raw) // pair_bytes}")
            pairs = np.frombuffer(raw, dtype=np.uint8).reshape(take, *matrix.shape[1:])
            yield lanczos_64(pairs[:, 0], integer_mode=True)


def _factors(category: np.ndarray, info: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The factor classes (N, 4) and the instance of every image."""
    if (info[:, 2] % 2).any():
        raise DataError(f"{where}: azimuth (info column 2) holds odd values; SmallNORB's are 0, 2, ..., 34")
    classes = np.column_stack((category, info[:, 1], info[:, 2] // 2, info[:, 3])).astype(np.int64)
    return classes, info[:, 0]


def load(folder: str | Path) -> StoredImages:
    folder = Path(folder)
    splits = _headers(folder)
    factors = [_factors(_elements(s["cat"]), _elements(s["info"]), str(s["info"].path)) for s in splits]
    classes = np.concatenate([c for c, _ in factors])
    instances = np.concatenate([i for _, i in factors])
    where = f"SmallNORB in {folder}"
    sizes = class_counts(classes, f"{where}: factor classes ({', '.join(FACTOR_NAMES)})")
    cells = np.ravel_multi_index(tuple(classes.T), sizes)
    rows = rows_per_cell(cells, instances, sizes, where)
    blocks = (block for s in splits for block in _left_images(s["dat"]))
    pixels = pack_blocks(blocks, len(classes), SIZE * SIZE, bits=False, where=f"{where}: images")
    return StoredImages(
        source=where,
        pixels=pixels,
        bits=False,
        image_shape=(1, SIZE, SIZE),
        factor_names=FACTOR_NAMES,
        factor_sizes=sizes,
        rows=rows,
    )
