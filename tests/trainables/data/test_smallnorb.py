"""SmallNORB's binary matrix files written byte by byte as the dataset's page describes them, read back.

A small grid (2 categories, 2 elevations, 3 azimuths, 2 lightings) with two
instances in each split, so every factor combination has four images, as
the published one has ten. The training split is written gzipped, as
published, the testing split unpacked, as disentanglement_lib reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.trainables.data.published import NORB_INTS, NORB_SIZES, matrix_bytes, norb_pair, write_smallnorb
from trainables.data import DataError, load_stored, make_dataset, stored_bytes
from trainables.evaluate import CodeCache
from trainables.model import BetaVAE
from trainables.settings import DataSettings

SIZES = NORB_SIZES


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_smallnorb(tmp_path_factory.mktemp("smallnorb") / "small_norb")


def settings(path: Path) -> DataSettings:
    return DataSettings(name="smallnorb", path=str(path))


def reference_resize(left: np.ndarray) -> np.ndarray:
    """disentanglement_lib's `_resize_images` on one image: the bytes read as int8, Pillow's Lanczos, / 255."""
    return np.asarray(Image.fromarray(left.view(np.int8)).resize((64, 64), Image.Resampling.LANCZOS)) / 255.0


def test_the_factors_are_category_elevation_azimuth_lighting_with_four_images_each(folder):
    stored = load_stored(settings(folder))
    assert stored.factor_names == ("category", "elevation", "azimuth", "lighting")
    assert stored.factor_sizes == SIZES and stored.image_shape == (1, 64, 64)
    assert stored.rows.shape == (24, 4) and stored.complete_grid and not stored.deterministic
    assert stored_bytes(settings(folder)) == stored.pixels.nbytes == 96 * 64 * 64


def test_an_observation_is_channel_0_resized_as_the_reference_does(folder, lanczos):
    dataset = make_dataset(settings(folder))
    combination = (1, 0, 2, 1)
    images = dataset.observations(np.array([combination] * 200), torch.Generator().manual_seed(0))[:, 0].numpy()
    for instance in (0, 1, 4, 6):
        left = norb_pair(*combination, instance)[0]
        reference = reference_resize(left)
        independent = np.clip(np.round(lanczos(left)), 0, 255) / 255
        assert reference.max() > 1  # the reference's integer mode keeps the overshoot at the square's edges...
        expected = np.clip(reference, 0, 1)  # ...a stored byte cannot
        assert any(np.array_equal(image, expected.astype(np.float32)) for image in images), instance
        assert np.abs(expected - independent).max() <= 1 / 255 + 1e-9  # Lanczos-3 as defined, to one level
    grey = 10 + 40 + 24 + 6
    assert np.isclose(images[:, 63, 63], grey / 255).all()  # the background, far from the square


def test_each_observation_draws_one_of_the_combinations_images_and_the_metrics_see_the_draw(folder):
    dataset = make_dataset(settings(folder))
    factors = np.array([[0, 1, 1, 0]] * 400)
    images = dataset.observations(factors, torch.Generator().manual_seed(1))
    square_top = images[:, 0, :, 45].gt(0.9).float().argmax(dim=1)  # where each image's square starts
    rows = {int(top): int(n) for top, n in zip(*np.unique(square_top.numpy(), return_counts=True), strict=True)}
    assert len(rows) == 4 and all(70 <= n <= 130 for n in rows.values()), rows  # four instances, drawn uniformly
    again = dataset.observations(factors, torch.Generator().manual_seed(1))
    assert torch.equal(images, again)  # the draw follows the generator
    cache = CodeCache(BetaVAE(4), dataset, generator=torch.Generator().manual_seed(0))
    mu, _ = cache.lookup(factors[:10])
    assert cache.encoded == 10 and len(np.unique(mu[:, 0])) > 1  # no code cached per combination


def odd_azimuth(split, kind, array, magic):
    if kind == "info":
        bent = array.copy()
        bent[0, 2] = 1
        return bent, magic
    return None


def drop_last_image(split, kind, array, magic):
    return (array[:-1], magic) if "testing" in split else None


def cut_dat(split, kind, array, magic):
    return matrix_bytes(array, magic)[:-500] if kind == "dat" and "testing" in split else None


def cut_gz_dat(split, kind, array, magic):
    return matrix_bytes(array, magic)[:-500] if kind == "dat" and "training" in split else None


@pytest.mark.parametrize(
    ("change", "file", "message"),
    [
        (lambda s, k, a, m: (a.astype("<i4"), NORB_INTS) if k == "dat" else None, "training-dat.mat.gz",
         "holds int32 (48, 2, 96, 96); a SmallNORB -dat file of this split holds uint8 (48, 2, 96, 96)"),
        (lambda s, k, a, m: b"\x00\x00\x00\x00" + matrix_bytes(a, m)[4:] if k == "cat" else None,
         "training-cat.mat.gz", "not a NORB binary matrix: magic number 0x0"),
        (lambda s, k, a, m: (a[:, :, :95], m) if k == "dat" else None, "training-dat.mat.gz",
         "(48, 2, 95, 96)"),
        (lambda s, k, a, m: (a[:-1], m) if k == "cat" and "testing" in s else None, "testing-cat.mat",
         "holds int32 (47,); a SmallNORB -cat file of this split holds int32 (48,)"),
        (cut_dat, "testing-dat.mat", "holds 884,260 bytes, its header declares uint8 (48, 2, 96, 96) = 884,760"),
        (cut_gz_dat, "training-dat.mat.gz", "holds 884,260 bytes, its header declares"),
        (odd_azimuth, "training-info.mat.gz", "azimuth (info column 2) holds odd values"),
        (drop_last_image, "", "the factor classes [1, 1, 2, 1] have 3 images where the others have 4"),
    ],
    ids=["dtype", "magic", "shape", "count", "truncated", "truncated-gz", "azimuth", "uneven"],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(tmp_path, change, file, message, allocates_at_most):
    bad = write_smallnorb(tmp_path / "bad", change)
    with allocates_at_most(4 << 20), pytest.raises(DataError) as error:  # refused before the images are read
        load_stored(settings(bad))
    assert str(bad) in str(error.value) and file in str(error.value) and message in str(error.value)


def test_a_missing_file_or_a_file_for_the_folder_is_refused(tmp_path, folder):
    partial = write_smallnorb(tmp_path / "partial")
    (partial / "smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat").unlink()
    with pytest.raises(DataError, match="no smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat \\(nor .*.gz\\)"):
        load_stored(settings(partial))
    a_file = next(folder.iterdir())
    with pytest.raises(DataError, match=f"{a_file}: no such folder"):
        load_stored(settings(a_file))
