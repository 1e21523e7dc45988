"""Reading `.npz` members without holding a whole image array in memory.

A full dSprites file holds 2.9 GB of images (uint8, one byte per pixel);
packed to bits it is 368 MB. `np.load` would read the 2.9 GB at once, so the
images are streamed from the zip member a block of rows at a time (stored or
deflated alike) and packed block by block. Headers are read alone, so a
config can be checked (keys, shapes, dtypes) without reading any data.
Object arrays are never unpickled: a pickled member (dSprites' `metadata`)
only has to be present.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from trainables.data.base import DataError

STREAM_BYTES = 64 << 20  # bytes of one streamed block of rows


@contextmanager
def open_npz(path: str | Path) -> Iterator[zipfile.ZipFile]:
    """The file as a zip archive, or a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: cannot be read as an .npz file ({exc})") from None
    with archive:
        yield archive


def _member(archive: zipfile.ZipFile, key: str) -> str:
    name = f"{key}.npy"
    if name not in archive.namelist():
        present = sorted(n.removesuffix(".npy") for n in archive.namelist())
        raise DataError(f"{archive.filename}: no array {key!r} (it holds {', '.join(present) or 'nothing'})")
    return name


def _read_header(stream: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(stream)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{where}: not a readable .npy array ({exc})") from None
    return tuple(shape), np.dtype(dtype), bool(fortran)


def require_arrays(path: str | Path, found: Mapping[str, object], keys: Sequence[str], kind: str) -> None:
    """Refuse a file that lacks one of `keys`, naming what it holds and what `kind` of file holds."""
    missing = [k for k in keys if k not in found]
    if missing:
        raise DataError(
            f"{path}: not {kind}: no array {', '.join(map(repr, missing))} "
            f"(it holds {', '.join(sorted(found)) or 'nothing'}; {kind} holds {', '.join(keys)})"
        )


def headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in the file, read from the headers only."""
    out = {}
    with open_npz(path) as archive:
        for name in archive.namelist():
            if name.endswith(".npy"):
                with archive.open(name) as stream:
                    shape, dtype, _ = _read_header(stream, f"{path}: {name}")
                out[name.removesuffix(".npy")] = (shape, dtype)
    return out


def require_complete(path: str | Path, keys: Sequence[str]) -> None:
    """Refuse an array whose data is shorter (or longer) than its header declares.

    The zip directory gives each member's size, so this needs no data: a
    reader calls it once the headers are found fit, before it allocates room
    for the arrays.
    """
    with open_npz(path) as archive:
        for key in keys:
            info = archive.getinfo(_member(archive, key))
            with archive.open(info) as stream:
                shape, dtype, _ = _read_header(stream, f"{path}: {key}")
                data_bytes = info.file_size - stream.tell()
            declared = math.prod(shape) * dtype.itemsize
            if data_bytes != declared:
                raise DataError(
                    f"{path}: array {key!r} holds {data_bytes:,} bytes of data, its header declares "
                    f"{dtype} {shape} = {declared:,} bytes (the file is truncated or damaged)"
                )


def read_small(path: str | Path, key: str) -> np.ndarray:
    """One array of the file read whole (factor classes, names: megabytes, not gigabytes)."""
    with open_npz(path) as archive, archive.open(_member(archive, key)) as stream:
        try:
            return np.lib.format.read_array(stream, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: array {key!r} cannot be read ({exc})") from None


def stream_rows(
    path: str | Path, key: str, rows_per_block: int | None = None, row_ndim: int | None = None
) -> Iterator[np.ndarray]:
    """The array `key` block by block along its first axis (C order), never whole in memory.

    `row_ndim`: a row is the last `row_ndim` axes and the axes before them are
    flattened into one (an array of images laid out as the factor grid, say);
    by default a row is everything after the first axis.
    """
    with open_npz(path) as archive, archive.open(_member(archive, key)) as stream:
        shape, dtype, fortran = _read_header(stream, f"{path}: {key}")
        if fortran or dtype.hasobject or not shape:
            raise DataError(f"{path}: array {key!r} must be a C-ordered numeric array with rows")
        if row_ndim is not None:
            shape = (math.prod(shape[: len(shape) - row_ndim]), *shape[len(shape) - row_ndim :])
        row_items = int(np.prod(shape[1:], dtype=np.int64))
        row_bytes = max(row_items * dtype.itemsize, 1)
        block = rows_per_block or max(1, STREAM_BYTES // row_bytes)
        left = shape[0]
        while left > 0:
            take = min(block, left)
            try:
                raw = stream.read(take * row_bytes)
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{path}: array {key!r} cannot be read ({exc})") from None
            if len(raw) != take * row_bytes:
                raise DataError(f"{path}: array {key!r} is truncated ({shape[0] - left} of {shape[0]} rows read)")
            yield np.frombuffer(raw, dtype=dtype).reshape((take, *shape[1:]))
            left -= take
