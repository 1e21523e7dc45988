"""Scream-dSprites: each observation a random patch of the background, averaged with a random colour and
inverted on the sprite, as disentanglement_lib's ScreamDSprites makes it, from any single-channel source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from tests.trainables.data.published import write_noise_background
from trainables.data import DataError, ProceduralDSprites, byo, check_settings, dsprites_file, make_dataset
from trainables.data.variants import read_background
from trainables.settings import DataSettings

HEIGHT, WIDTH = 76, 84  # within 350 x 274: fitting leaves it as it is


@pytest.fixture(scope="module")
def noise(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A background of random pixels (a lossless PNG), so every patch position looks different."""
    path = tmp_path_factory.mktemp("scream") / "noise.png"
    return path, write_noise_background(path, HEIGHT, WIDTH)


def where_from(observation: torch.Tensor, sprite: torch.Tensor, background: np.ndarray) -> tuple[int, int, np.ndarray]:
    """The patch (top, left) and the colour that make `observation` by the reference's formula, found by trying
    every patch: off the sprite the pixel is (patch + colour) / 2, on it 1 - (patch + colour) / 2."""
    half = torch.where(sprite == 1, 1 - observation, observation).double()  # (patch + colour) / 2 everywhere
    image = torch.tensor(background, dtype=torch.float64).permute(2, 0, 1) / 255
    patches = image.unfold(1, 64, 1).unfold(2, 64, 1)  # (3, tops, lefts, 64, 64)
    colour = 2 * half[:, None, None] - patches  # constant over the pixels at the right patch only
    spread = colour.flatten(3).std(dim=3).amax(dim=0)
    top, left = np.unravel_index(int(spread.argmin()), tuple(spread.shape))
    assert float(spread[top, left]) < 1e-5, "no patch and colour make this observation"
    return int(top), int(left), colour[:, top, left, 0, 0].numpy()


def test_each_observation_is_a_random_patch_shifted_by_a_random_colour_and_inverted_on_the_sprite(noise):
    path, pixels = noise
    dataset = make_dataset(DataSettings(variant="scream", background=str(path)))
    assert dataset.image_shape == (3, 64, 64) and not dataset.deterministic
    factors = dataset.sample_factors(16, np.random.default_rng(0))
    x = dataset.observations(factors, torch.Generator().manual_seed(0))
    assert torch.equal(x, dataset.observations(factors, torch.Generator().manual_seed(0)))  # seeded
    sprites = ProceduralDSprites().observations(factors)
    found = [where_from(obs, sprite, pixels) for obs, sprite in zip(x, sprites, strict=True)]
    tops, lefts, colours = zip(*found, strict=True)
    # The reference's randint(0, H - 64) never starts a patch at H - 64: here neither.
    assert max(tops) <= HEIGHT - 65 and max(lefts) <= WIDTH - 65
    assert len(set(zip(tops, lefts, strict=True))) > 12  # a patch drawn per observation
    colours = np.array(colours)
    assert colours.min() >= -1e-6 and colours.max() <= 1 + 1e-6 and len(np.unique(colours.round(6), axis=0)) == 16
    assert colours.min() < 0.25 and colours.max() > 0.75  # each channel uniform over [0, 1], not a narrower range


def test_any_dsprites_source_takes_the_variant(tmp_path, noise):
    path, pixels = noise
    sizes = (1, 3, 2, 4, 4, 4)
    classes = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
    images = ProceduralDSprites().observations(classes[:, 1:])[:, 0].numpy().astype(np.uint8)
    file = dsprites_file.write(tmp_path / "dsprites.npz", images, classes)
    dataset = make_dataset(DataSettings(name="dsprites_file", path=str(file), variant="scream", background=str(path)))
    factors = dataset.sample_factors(4, np.random.default_rng(1))
    x = dataset.observations(factors, torch.Generator().manual_seed(2))
    sprites = ProceduralDSprites().observations(factors)
    for obs, sprite in zip(x, sprites, strict=True):
        where_from(obs, sprite, pixels)


def test_the_background_is_fitted_within_350_x_274_keeping_its_aspect(tmp_path):
    for size, fitted in (((700, 548), (274, 350, 3)), ((1000, 300), (105, 350, 3)), ((200, 100), (100, 200, 3))):
        path = tmp_path / f"{size[0]}.jpg"
        Image.new("RGB", size, (200, 30, 60)).save(path)
        background = read_background(path)
        assert background.shape == fitted and background.dtype == np.uint8
        assert np.abs(background.astype(int) - [200, 30, 60]).max() <= 2  # JPEG's rounding only
    grey = tmp_path / "grey.png"
    Image.new("L", (100, 100), 128).save(grey)
    assert read_background(grey).shape == (100, 100, 3)  # any image, as RGB


def test_a_background_that_cannot_serve_is_refused_naming_it(tmp_path, noise):
    small = tmp_path / "small.png"
    Image.new("RGB", (300, 64)).save(small)
    with pytest.raises(DataError, match=f"{small}: 300 x 64 pixels once fitted within 350 x 274"):
        check_settings(DataSettings(variant="scream", background=str(small)))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"{junk}: cannot be read as an image"):
        check_settings(DataSettings(variant="scream", background=str(junk)))
    rgb = byo.write(tmp_path / "rgb.npz", np.zeros((2, 64, 64, 3), np.uint8), np.array([[0], [1]]), ["a"])
    with pytest.raises(DataError, match="the scream variant needs single-channel images, these have 3"):
        check_settings(DataSettings(name="npz", path=str(rgb), variant="scream", background=str(noise[0])))


def test_the_background_goes_with_the_scream_variant_only():
    with pytest.raises(ValidationError, match="background: required when variant is 'scream'"):
        DataSettings(variant="scream")
    with pytest.raises(ValidationError, match="background: only the scream variant uses a background image"):
        DataSettings(variant="color", background="/data/scream.jpg")
