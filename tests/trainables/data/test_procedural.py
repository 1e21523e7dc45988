import numpy as np
import pytest
import torch

from trainables.data import FACTOR_SIZES, ORIENTATIONS, SCALES, ProceduralDSprites, base_sprites


@pytest.fixture(scope="module")
def dataset() -> ProceduralDSprites:
    return ProceduralDSprites()


def test_factor_grid_is_the_original_dsprites_grid(dataset):
    assert dataset.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert dataset.factor_sizes == (3, 6, 40, 32, 32)
    assert int(np.prod(FACTOR_SIZES)) == 737280
    np.testing.assert_allclose(SCALES, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert ORIENTATIONS[0] == 0.0 and ORIENTATIONS[-1] == pytest.approx(2 * np.pi)


def test_observations_are_binary_64x64(dataset):
    factors = dataset.sample_factors(32, np.random.default_rng(0))
    images = dataset.observations(factors)
    assert images.shape == (32, 1, 64, 64) and images.dtype == torch.float32
    assert set(torch.unique(images).tolist()) <= {0.0, 1.0}
    assert (images.sum(dim=(1, 2, 3)) > 0).all()


def test_rendering_is_deterministic_and_sampling_follows_the_seed(dataset):
    a = dataset.sample_factors(100, np.random.default_rng(7))
    b = dataset.sample_factors(100, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert torch.equal(dataset.observations(a), ProceduralDSprites().observations(b))
    assert not np.array_equal(a, dataset.sample_factors(100, np.random.default_rng(8)))


def test_sampled_factors_cover_every_class_uniformly(dataset):
    factors = dataset.sample_factors(60000, np.random.default_rng(0))
    for k, size in enumerate(FACTOR_SIZES):
        counts = np.bincount(factors[:, k], minlength=size)
        assert len(counts) == size
        expected = 60000 / size
        assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


def test_each_factor_changes_the_image_in_its_own_way(dataset):
    base = np.array([[1, 3, 5, 10, 10]])
    image = dataset.observations(base)[0, 0]
    # posX moves the sprite right by one pixel per class, posY moves it down.
    right = dataset.observations(base + [[0, 0, 0, 2, 0]])[0, 0]
    down = dataset.observations(base + [[0, 0, 0, 0, 3]])[0, 0]
    assert torch.equal(torch.roll(image, 2, dims=1), right)
    assert torch.equal(torch.roll(image, 3, dims=0), down)
    # Larger scale covers more pixels; shapes differ from each other.
    assert dataset.observations([[1, 5, 5, 10, 10]]).sum() > dataset.observations([[1, 0, 5, 10, 10]]).sum()
    sprites = base_sprites()
    assert not np.array_equal(sprites[0, 5, 0], sprites[1, 5, 0])
    assert not np.array_equal(sprites[1, 5, 0], sprites[2, 5, 0])
    # Orientation 0 and 2*pi are the same picture, as in the original file.
    np.testing.assert_array_equal(sprites[:, :, 0], sprites[:, :, -1])


def test_sprites_stay_inside_the_image_at_the_extreme_positions(dataset):
    corners = np.array([[s, 5, o, x, y] for s in range(3) for o in (0, 5) for x in (0, 31) for y in (0, 31)])
    whole = dataset.observations(corners).sum(dim=(1, 2, 3))
    centred = dataset.observations(corners * [1, 1, 1, 0, 0] + [0, 0, 0, 16, 16]).sum(dim=(1, 2, 3))
    assert torch.equal(whole, centred)  # no pixel was cut off at the border


def test_flat_index_is_row_major_like_the_original_file(dataset):
    assert dataset.flat_index(np.array([[0, 0, 0, 0, 1]]))[0] == 1
    assert dataset.flat_index(np.array([[0, 0, 0, 1, 0]]))[0] == 32
    assert dataset.flat_index(np.array([[2, 5, 39, 31, 31]]))[0] == 737279


def test_device_sampling_is_uniform_and_seeded(dataset):
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    a, b = dataset.sample_factors_torch(5000, g1), dataset.sample_factors_torch(5000, g2)
    assert torch.equal(a, b)
    assert (a.min(dim=0).values == 0).all()
    assert (a.max(dim=0).values == torch.tensor(FACTOR_SIZES) - 1).all()


def test_bad_factor_shape_is_a_clear_error(dataset):
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        dataset.observations(np.zeros((3, 4), dtype=int))
