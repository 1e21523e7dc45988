"""Shapes3D files written in DeepMind's HDF5 layout and disentanglement_lib's npz layout, read back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainables.data.published import (
    SHAPES3D_FULL,
    SHAPES3D_SMALL,
    shapes3d_image,
    shapes3d_images,
    write_h5,
    write_shapes3d,
    write_shapes3d_declared,
)
from trainables.data import DataError, check_settings, load_stored, make_dataset, shapes3d, stored_bytes
from trainables.settings import DataSettings

NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FULL = SHAPES3D_FULL
SMALL = SHAPES3D_SMALL
labels = shapes3d.grid_labels
image, images = shapes3d_image, shapes3d_images


@pytest.fixture(scope="module")
def h5_path(tmp_path_factory) -> Path:
    return write_shapes3d(tmp_path_factory.mktemp("shapes3d") / "3dshapes.h5")


def settings(path: Path) -> DataSettings:
    return DataSettings(name="shapes3d", path=str(path))


def test_the_hdf5_file_reads_back_with_its_grid_channels_and_value_range(h5_path):
    dataset = make_dataset(settings(h5_path))
    assert dataset.factor_names == NAMES and dataset.factor_sizes == SMALL
    assert dataset.image_shape == (3, 64, 64) and dataset.deterministic and dataset.complete_grid
    factors = dataset.sample_factors(40, np.random.default_rng(0))
    x = dataset.observations(factors)
    for got, f in zip(x, factors, strict=True):
        flat = int(np.ravel_multi_index(tuple(f), SMALL))
        expected = image(flat).transpose(2, 0, 1) / 255.0  # channels first: red, green, blue
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    corner = dataset.observations(np.array([[0, 0, 0, 0, 0, 0], [1, 2, 1, 1, 1, 2]]))
    assert corner[0, :, 0, 0].tolist() == pytest.approx([0, 80 / 255, 160 / 255])
    assert corner[1, 0, 0, 0].item() == pytest.approx(143 / 255)  # the last cell, 143, in the red channel
    assert stored_bytes(settings(h5_path)) == load_stored(settings(h5_path)).pixels.nbytes == 144 * 3 * 64 * 64


def test_disentanglement_libs_npz_with_the_grid_as_axes_reads_the_same(tmp_path, h5_path):
    path = tmp_path / "shapes3d.npz"
    np.savez(path, images=images(SMALL).reshape(*SMALL, 64, 64, 3), labels=labels(SMALL).reshape(*SMALL, 6))
    from_npz, from_h5 = load_stored(settings(path)), load_stored(settings(h5_path))
    assert from_npz.factor_sizes == SMALL
    np.testing.assert_array_equal(from_npz.pixels, from_h5.pixels)


def test_a_full_size_file_is_checked_from_its_headers_without_reading_the_images(tmp_path, allocates_at_most):
    path = write_shapes3d_declared(tmp_path / "3dshapes.h5")
    assert path.stat().st_size < 30 << 20
    with allocates_at_most(1 << 20):
        check_settings(settings(path))
        assert stored_bytes(settings(path)) == 480000 * 64 * 64 * 3 == 5_898_240_000
    assert shapes3d.factor_sizes(labels(FULL), "labels") == FULL


def test_a_full_size_file_one_image_short_is_refused_naming_the_grid_before_the_images_are_read(
    tmp_path, allocates_at_most
):
    path = write_shapes3d_declared(tmp_path / "3dshapes.h5", 479999)
    with allocates_at_most(200 << 20), pytest.raises(DataError) as error:  # labels, not 5.9 GB of images
        load_stored(settings(path))
    assert str(path) in str(error.value)
    assert "479,999 images, but the labels take 10 x 10 x 10 x 8 x 4 x 15 = 480,000" in str(error.value)


def swap_two_factors(arrays: dict) -> None:
    """The rows in the order (wall hue, floor hue, ...): labels and images both, consistently."""
    order = np.arange(math.prod(SMALL)).reshape(SMALL).transpose(1, 0, 2, 3, 4, 5).ravel()
    arrays["images"], arrays["labels"] = arrays["images"][order], arrays["labels"][order]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(imgs=a.pop("images")), "no array 'images'"),
        (lambda a: a.update(images=a["images"][..., 0]), "images is uint8 (144, 64, 64)"),
        (lambda a: a.update(images=a["images"][:, :32]), "images is uint8 (144, 32, 64, 3)"),
        (lambda a: a.update(images=a["images"].astype(np.float32)), "images is float32"),
        (lambda a: a.update(labels=a["labels"][:, :5]), "labels is float64 (144, 5)"),
        (lambda a: a.update(labels=a["labels"].astype(np.int64)), "labels is int64"),
        (lambda a: a.update(images=a["images"][:-1], labels=a["labels"][:-1]), "143 images, but the labels take"),
        (swap_two_factors, "labels column 0 (floor_hue) changes along another factor's axis"),
    ],
    ids=["key", "shape", "size", "dtype", "labels-shape", "labels-dtype", "count", "order"],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(tmp_path, change, message):
    arrays = {"images": images(SMALL), "labels": labels(SMALL)}
    change(arrays)
    path = write_h5(tmp_path / "bad.h5", arrays)
    with pytest.raises(DataError) as error:
        load_stored(settings(path))
    assert str(path) in str(error.value) and message in str(error.value)


def test_unreadable_and_truncated_files_are_refused_naming_the_file(tmp_path, h5_path, cut_member):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"neither HDF5 nor zip")
    with pytest.raises(DataError, match=f"{junk}: neither an HDF5 file"):
        check_settings(settings(junk))
    cut = tmp_path / "cut.h5"
    cut.write_bytes(h5_path.read_bytes()[: h5_path.stat().st_size // 2])
    with pytest.raises(DataError, match=f"{cut}: cannot be read as an HDF5 file"):
        check_settings(settings(cut))
    whole = tmp_path / "whole.npz"
    np.savez(whole, images=images(SMALL), labels=labels(SMALL))
    short = cut_member(whole, tmp_path / "short.npz", "images", 4096)
    with pytest.raises(DataError, match=f"{short}: array 'images' holds 1,765,376 bytes of data, its header declares"):
        check_settings(settings(short))
