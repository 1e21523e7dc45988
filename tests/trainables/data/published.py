"""Small files in the formats the study's datasets are published in, for the reader tests and the dataset sweeps.

Each writer lays its file out as the dataset's authors do (keys, dtypes,
magic numbers, file names), over a smaller grid where the format allows one,
with images whose pixels name their factor combination, so a test can work
out by hand which image a reader must return.
"""

from __future__ import annotations

import gzip
import itertools
import math
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image

from trainables.data import shapes3d

# --- Shapes3D: DeepMind's 3dshapes.h5 (`images` (N, 64, 64, 3) uint8, `labels` (N, 6) float64) ---

SHAPES3D_FULL = (10, 10, 10, 8, 4, 15)  # 480,000 images
SHAPES3D_SMALL = (2, 3, 2, 2, 2, 3)  # 144 images; every factor varies, so every metric applies


def shapes3d_image(flat: int) -> np.ndarray:
    """The image of grid cell `flat`: (64, 64, 3) uint8, channel c offset by 80 c, a ramp down the rows."""
    y = np.arange(64)[:, None, None]
    c = np.arange(3)[None, None, :]
    return np.broadcast_to((flat + 80 * c + y) % 256, (64, 64, 3)).astype(np.uint8)


def shapes3d_images(sizes: tuple[int, ...]) -> np.ndarray:
    return np.stack([shapes3d_image(i) for i in range(math.prod(sizes))])


def write_h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def write_shapes3d(path: Path, sizes: tuple[int, ...] = SHAPES3D_SMALL) -> Path:
    """A 3dshapes.h5 of the grid `sizes`, rows in row-major order as in the published file."""
    return write_h5(path, {"images": shapes3d_images(sizes), "labels": shapes3d.grid_labels(sizes)})


def write_shapes3d_declared(path: Path, count: int = math.prod(SHAPES3D_FULL)) -> Path:
    """A 3dshapes.h5 of the published size whose images are declared but never written, so HDF5 stores none
    of their 5.9 GB and the file holds the labels alone; a `count` below 480,000 drops the last rows."""
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(count, 64, 64, 3), dtype=np.uint8)
        f.create_dataset("labels", data=shapes3d.grid_labels(SHAPES3D_FULL)[:count])
    return path


# --- MPI3D: npz files of `images` alone, rows in the subset grid's row-major order ---


def npz_header_only(path: Path, shape: tuple[int, ...], dtype: str = "|u1", key: str = "images") -> Path:
    """An npz whose member holds the .npy header of `shape` and no data: a full-size header, kilobytes on disk."""
    with zipfile.ZipFile(path, "w") as archive, archive.open(f"{key}.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": dtype, "fortran_order": False, "shape": shape})
    return path


# --- SmallNORB: the six binary matrix files (-dat, -cat, -info of training and testing) ---

NORB_BYTES, NORB_INTS = 0x1E3D4C55, 0x1E3D4C54  # magic numbers of uint8 and int32 matrices
NORB_SPLITS = {"5x46789x9x18x6x2x96x96-training": (4, 6), "5x01235x9x18x6x2x96x96-testing": (0, 1)}  # instances
NORB_SIZES = (2, 2, 3, 2)  # category, elevation, azimuth (stored 0, 2, 4), lighting

NorbChange = Callable[[str, str, np.ndarray, int], "tuple[np.ndarray, int] | bytes | None"]


def matrix_bytes(array: np.ndarray, magic: int) -> bytes:
    """A NORB binary matrix: magic, number of dimensions, the dimensions (at least three), the elements."""
    dims = list(array.shape) + [1] * (3 - array.ndim)
    return struct.pack(f"<ii{len(dims)}i", magic, array.ndim, *dims) + array.tobytes()


def norb_pair(category: int, elevation: int, azimuth: int, lighting: int, instance: int) -> np.ndarray:
    """A stereo pair (2, 96, 96): channel 0 a grey level naming the combination with a white square placed
    by the instance (the resize overshoots at its edges), channel 1 its negative."""
    left = np.full((96, 96), 10 + 40 * category + 20 * elevation + 12 * azimuth + 6 * lighting, dtype=np.uint8)
    left[10 + 8 * instance : 40 + 8 * instance, 30:70] = 255
    return np.stack([left, 255 - left])


def norb_split_content(instances: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = NORB_SIZES
    rows = list(itertools.product(range(sizes[0]), instances, range(sizes[1]), range(sizes[2]), range(sizes[3])))
    dat = np.stack([norb_pair(c, e, a, light, i) for c, i, e, a, light in rows])
    cat = np.array([r[0] for r in rows], dtype="<i4")
    info = np.array([(i, e, 2 * a, light) for _, i, e, a, light in rows], dtype="<i4")
    return dat, cat, info


def write_smallnorb(folder: Path, change: NorbChange | None = None) -> Path:
    """The six files, the training split gzipped as published and the testing split unpacked;
    `change(split, kind, array, magic)` may return another (array, magic) or raw bytes."""
    folder.mkdir(exist_ok=True)
    for split, instances in NORB_SPLITS.items():
        content = dict(zip(("dat", "cat", "info"), norb_split_content(instances), strict=True))
        for kind, array in content.items():
            magic = NORB_BYTES if kind == "dat" else NORB_INTS
            data = matrix_bytes(array, magic)
            if change is not None:
                changed = change(split, kind, array, magic)
                data = changed if isinstance(changed, bytes) else matrix_bytes(*changed) if changed else data
            name = f"smallnorb-{split}-{kind}.mat"
            if "training" in split:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)
    return folder


# --- Cars3D: one MATLAB file per car, `im` (128, 128, 3, 24, 4) uint8 ---


def car_views(car: int) -> np.ndarray:
    """One car's `im`: channel c of the view at azimuth a, elevation e is a smooth ramp whose level names
    (car, elevation, azimuth, channel), so a resize keeps it within 0..255."""
    y, x = np.mgrid[0:128, 0:128]
    im = np.empty((128, 128, 3, 24, 4), dtype=np.uint8)
    for a in range(24):
        for e in range(4):
            for c in range(3):
                im[:, :, c, a, e] = 5 * a + 30 * e + 50 * c + 9 * car + (x + 2 * y) // 16
    return im


def write_cars3d(folder: Path, cars: int, compress: bool = True) -> Path:
    """The archive's data/cars folder for `cars` cars. MATLAB's v7 files compress each variable; v6 files,
    also v5 format, do not."""
    folder.mkdir(exist_ok=True)
    for car in range(cars):
        content = {"im": car_views(car), "mask": np.ones((128, 128, 24, 4), dtype=np.uint8)}
        scipy.io.savemat(folder / f"car_{car + 1:03d}_mesh.mat", content, do_compression=compress)
    (folder / "list.txt").write_text("".join(f"car_{car + 1:03d}_mesh\n" for car in range(cars)))
    return folder


# --- scream-dSprites: the background image ---


def write_noise_background(path: Path, height: int, width: int) -> np.ndarray:
    """A background of random pixels saved as a lossless PNG, so every patch position looks different;
    returns its pixels (height, width, 3)."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels
