"""Cars3D folders of MATLAB files (`im` (128, 128, 3, 24, 4) uint8 per car) written with scipy, read back.

Three cars instead of 183: the grid is elevation 4, azimuth 24, object 3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from tests.trainables.data.published import car_views, write_cars3d
from trainables.data import DataError, load_stored, make_dataset, stored_bytes
from trainables.settings import DataSettings

CARS = 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_cars3d(tmp_path_factory.mktemp("cars3d") / "cars", CARS)


def settings(path: Path) -> DataSettings:
    return DataSettings(name="cars3d", path=str(path))


def test_the_grid_is_elevation_azimuth_object_and_each_view_is_resized_as_the_reference_does(folder, lanczos):
    dataset = make_dataset(settings(folder))
    assert dataset.factor_names == ("elevation", "azimuth", "object") and dataset.factor_sizes == (4, 24, CARS)
    assert dataset.image_shape == (3, 64, 64) and dataset.deterministic and dataset.complete_grid
    factors = np.array([[0, 0, 0], [3, 23, 2], [1, 17, 1], [2, 5, 0]])
    images = dataset.observations(factors).numpy()
    for image, (e, a, car) in zip(images, factors, strict=True):
        for c in range(3):  # red, green, blue, in that order
            expected = np.clip(np.round(lanczos(car_views(car)[:, :, c, a, e])), 0, 255) / 255
            assert np.abs(image[c] - expected).max() <= 1 / 255 + 1e-6, (e, a, car, c)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert stored_bytes(settings(folder)) == load_stored(settings(folder)).pixels.nbytes == 4 * 24 * CARS * 12288


def test_cars_are_numbered_in_file_name_order(tmp_path):
    folder = tmp_path / "cars"
    write_cars3d(folder, cars=2)
    (folder / "car_001_mesh.mat").rename(folder / "car_900_mesh.mat")  # car 0's views now sort last
    dataset = make_dataset(settings(folder))
    first, last = dataset.observations(np.array([[0, 0, 0], [0, 0, 1]]))
    assert torch.equal(last, make_dataset(settings(write_cars3d(tmp_path / "again", cars=1))).observations([[0, 0, 0]])[0])
    assert not torch.equal(first, last)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda path: scipy.io.savemat(path, {"img": car_views(0)}), "no variable 'im' (it holds img)"),
        (lambda path: scipy.io.savemat(path, {"im": car_views(0)[:, :, :, :, :3]}),
         "im is uint8 (128, 128, 3, 24, 3); expected uint8 (128, 128, 3, 24, 4)"),
        (lambda path: scipy.io.savemat(path, {"im": car_views(0).astype(np.float64)}), "im is double"),
        (lambda path: path.write_bytes(path.read_bytes()[:-1000]), "(the file is truncated)"),
        (lambda path: path.write_bytes(b"not a mat file"), "cannot be read as a .mat file"),
    ],
    ids=["key", "shape", "dtype", "truncated", "junk"],
)
def test_a_bad_file_is_refused_naming_it_before_anything_is_allocated(tmp_path, change, message, allocates_at_most):
    folder = write_cars3d(tmp_path / "cars", cars=2, compress=False)
    bad = folder / "car_002_mesh.mat"
    change(bad)
    with allocates_at_most(16 << 20), pytest.raises(DataError) as error:  # headers only: no car is read whole
        load_stored(settings(folder))
    assert str(bad) in str(error.value) and message in str(error.value)


def test_a_folder_without_cars_or_a_file_for_the_folder_is_refused(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .mat file; Cars3D's data.path is the archive's data/cars folder"):
        load_stored(settings(tmp_path / "empty"))
    with pytest.raises(DataError, match="no such folder"):
        load_stored(settings(folder / "car_001_mesh.mat"))
