"""MPI3D npz files (only `images`, the rows in the grid's row-major order), read back against a subset's grid.

The files carry no labels, so a smaller file needs a smaller grid: the
subset table is shrunk for those tests. The full-size checks use npz files
whose `images` member is only a header of the real shape.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.trainables.data.published import npz_header_only as header_only
from trainables.data import DataError, check_settings, load_stored, make_dataset, mpi3d, stored_bytes
from trainables.settings import DataSettings

NAMES = (
    "object_color", "object_shape", "object_size", "camera_height", "background_color", "horizontal_axis",
    "vertical_axis",
)  # fmt: skip
SMALL = (2, 3, 1, 2, 1, 3, 4)  # 144 images


def image(flat: int) -> np.ndarray:
    """The image of grid cell `flat`: (64, 64, 3) uint8, channel c offset by 90 c, a ramp across the columns."""
    x = np.arange(64)[None, :, None]
    c = np.arange(3)[None, None, :]
    return np.broadcast_to((flat + 90 * c + 2 * x) % 256, (64, 64, 3)).astype(np.uint8)


@pytest.fixture
def small_toy(monkeypatch):
    monkeypatch.setitem(mpi3d.SUBSETS, "toy", SMALL)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mpi3d") / "mpi3d_toy.npz"
    np.savez_compressed(path, images=np.stack([image(i) for i in range(math.prod(SMALL))]))
    return path


def settings(path: Path, subset: str = "toy") -> DataSettings:
    return DataSettings(name="mpi3d", path=str(path), subset=subset)


def test_a_file_reads_back_on_its_subsets_grid_with_channels_in_order(small_toy, small_file):
    dataset = make_dataset(settings(small_file))
    assert dataset.factor_names == NAMES and dataset.factor_sizes == SMALL
    assert dataset.image_shape == (3, 64, 64) and dataset.deterministic
    factors = dataset.sample_factors(50, np.random.default_rng(0))
    x = dataset.observations(factors)
    for got, f in zip(x, factors, strict=True):
        flat = int(np.ravel_multi_index(tuple(f), SMALL))
        torch.testing.assert_close(got, torch.tensor(image(flat).transpose(2, 0, 1) / 255.0, dtype=torch.float32))
    one = dataset.observations(np.array([[1, 2, 0, 1, 0, 2, 3]]))[0]  # cell 143 (the last)
    assert one[:, 0, 0].mul(255).round().tolist() == [143, 233, 67]  # red 143, green 143 + 90, blue 323 - 256
    assert one[0, 0, 63].item() == pytest.approx(((143 + 126) % 256) / 255)  # the ramp runs along the columns
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert stored_bytes(settings(small_file)) == load_stored(settings(small_file)).pixels.nbytes == 144 * 12288


@pytest.mark.parametrize(
    ("subset", "count", "grid"),
    [("toy", 1_036_800, "6 x 6 x 2 x 3 x 3 x 40 x 40"), ("realistic", 1_036_800, "6 x 6 x 2 x 3 x 3 x 40 x 40"),
     ("real", 1_036_800, "6 x 6 x 2 x 3 x 3 x 40 x 40"), ("real_complex", 460_800, "4 x 4 x 2 x 3 x 3 x 40 x 40")],
)  # fmt: skip
def test_full_size_headers_pass_every_check_but_the_missing_data_and_a_count_off_by_one_names_the_grid(
    tmp_path, subset, count, grid, allocates_at_most
):
    full = header_only(tmp_path / "full.npz", (count, 64, 64, 3))
    short = header_only(tmp_path / "short.npz", (count - 1, 64, 64, 3))
    with allocates_at_most(1 << 20):
        with pytest.raises(DataError, match=f"{full}: array 'images' holds 0 bytes of data, its header declares"):
            load_stored(settings(full, subset))  # the shape, dtype and count were fine: only the data is missing
        with pytest.raises(DataError) as error:
            load_stored(settings(short, subset))
    expected = f"{short}: images holds {count - 1:,} images; the {subset} subset's grid {grid}"
    assert expected in str(error.value) and f"has {count:,}" in str(error.value)


def test_the_published_toy_file_is_not_disentanglement_libs_4_x_4_grid(tmp_path):
    older = header_only(tmp_path / "older.npz", (4 * 4 * 2 * 3 * 3 * 40 * 40, 64, 64, 3))
    with pytest.raises(DataError, match="460,800 images; the toy subset's grid 6 x 6 x 2"):
        check_settings(settings(older))
    with pytest.raises(DataError, match="holds 0 bytes of data"):  # as real_complex its grid fits
        check_settings(settings(older, "real_complex"))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"imgs": (144, 64, 64, 3)}, "not an MPI3D file: no array 'images' (it holds imgs"),
        ({"images": (144, 64, 64)}, "images is uint8 (144, 64, 64); expected uint8 (N, 64, 64, 3)"),
        ({"images": (144, 3, 64, 64)}, "images is uint8 (144, 3, 64, 64)"),
        ({"images": (144, 64, 64, 3), "dtype": np.float32}, "images is float32"),
        ({"images": (143, 64, 64, 3)}, "images holds 143 images; the toy subset's grid 2 x 3 x 1 x 2 x 1 x 3 x 4"),
    ],
    ids=["key", "grey", "channels-first", "dtype", "count"],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(tmp_path, small_toy, arrays, message):
    dtype = arrays.pop("dtype", np.uint8)
    path = tmp_path / "bad.npz"
    np.savez(path, **{key: np.zeros(shape, dtype=dtype) for key, shape in arrays.items()})
    with pytest.raises(DataError) as error:
        load_stored(settings(path))
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_truncated_file_is_refused_naming_it(tmp_path, small_toy, small_file, cut_member):
    plain = tmp_path / "plain.npz"
    with np.load(small_file) as f:
        np.savez(plain, images=f["images"])
    short = cut_member(plain, tmp_path / "short.npz", "images", 12288)
    with pytest.raises(DataError, match=f"{short}: array 'images' holds 1,757,184 bytes of data"):
        load_stored(settings(short))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(small_file.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"{cut}: cannot be read as an .npz file"):
        load_stored(settings(cut))


def test_the_subset_is_required_for_mpi3d_and_refused_elsewhere():
    with pytest.raises(ValidationError, match="subset: required when name is 'mpi3d'"):
        DataSettings(name="mpi3d", path="/data/mpi3d_toy.npz")
    with pytest.raises(ValidationError, match="subset: only mpi3d has subsets"):
        DataSettings(name="shapes3d", path="/data/3dshapes.h5", subset="toy")
    with pytest.raises(ValidationError, match="subset"):
        DataSettings(name="mpi3d", path="/data/mpi3d_toy.npz", subset="complex")
