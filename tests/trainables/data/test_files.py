"""Dataset files made on the fly in the original dSprites format and the bring-your-own format, read back."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data import DataError, ProceduralDSprites, byo, check_settings, dsprites_file, load_stored, make_dataset
from trainables.data.stored import StoredDataset
from trainables.evaluate import CodeCache, run_evaluation
from trainables.model import BetaVAE
from trainables.settings import DataSettings, EvalSettings

SIZES = (1, 3, 2, 4, 8, 8)  # color, shape, scale, orientation, posX, posY: a small grid in the original format
NAMES = ["shape", "scale", "orientation", "posX", "posY"]


def grid(sizes=SIZES) -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)


@pytest.fixture(scope="module")
def procedural() -> ProceduralDSprites:
    return ProceduralDSprites()


@pytest.fixture(scope="module")
def classes() -> np.ndarray:
    return grid()


@pytest.fixture(scope="module")
def images(procedural, classes) -> np.ndarray:
    return procedural.observations(classes[:, 1:])[:, 0].numpy().astype(np.uint8)


@pytest.fixture(scope="module")
def dsprites_path(tmp_path_factory, images, classes) -> Path:
    return dsprites_file.write(tmp_path_factory.mktemp("files") / "dsprites.npz", images, classes)


def settings(path: Path, name: str = "dsprites_file", **extra) -> DataSettings:
    return DataSettings(name=name, path=str(path), **extra)


def test_a_dsprites_file_reads_back_bit_packed_with_its_grid(dsprites_path, procedural, images):
    stored = load_stored(settings(dsprites_path))
    assert stored.factor_names == tuple(NAMES) and stored.factor_sizes == SIZES[1:]
    assert stored.bits and stored.pixels.shape == (len(images), 64 * 64 // 8)  # 8 pixels a byte
    assert stored.rows is None and stored.complete_grid
    dataset = make_dataset(settings(dsprites_path))
    factors = dataset.sample_factors(200, np.random.default_rng(0))
    assert torch.equal(dataset.observations(factors), procedural.observations(factors))
    np.testing.assert_array_equal(dataset.flat_index(factors), np.ravel_multi_index(tuple(factors.T), SIZES[1:]))
    drawn = dataset.sample_factors_torch(5000, torch.Generator().manual_seed(0))
    assert drawn.shape == (5000, 5) and all(int(drawn[:, k].max()) == SIZES[k + 1] - 1 for k in range(5))
    assert int(drawn.min()) == 0


def test_an_uncompressed_file_with_rows_streamed_in_small_blocks_reads_the_same(tmp_path, images, classes, monkeypatch):
    path = dsprites_file.write(tmp_path / "plain.npz", images, classes, compress=False)
    monkeypatch.setattr("trainables.data.npz.STREAM_BYTES", 4096 * 7)  # 7 images a block: blocks end mid-grid
    stored = load_stored(settings(path))
    np.testing.assert_array_equal(np.unpackbits(stored.pixels, axis=1).reshape(images.shape), images)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("metadata"), "no array 'metadata'"),
        (lambda a: a.update(imgs=a["imgs"].astype(np.float32)), "imgs is float32"),
        (lambda a: a.update(imgs=a["imgs"][:, :32]), "imgs is uint8 (1536, 32, 64)"),
        (lambda a: a.update(latents_classes=a["latents_classes"][:, 1:]), "latents_classes is int64 (1536, 5)"),
        (lambda a: a.update(latents_values=a["latents_classes"]), "latents_values is int64"),
        (lambda a: a.update(latents_classes=a["latents_classes"][::-1].copy()), "factor grid order: row 0 has"),
        (lambda a: a.update(imgs=a["imgs"][:-1], latents_classes=a["latents_classes"][:-1],
                            latents_values=a["latents_values"][:-1]), "a dSprites file holds every cell once"),
        (lambda a: a.update(imgs=a["imgs"] * 255), "values other than 0 and 1"),
    ],
)
def test_a_bad_dsprites_file_is_refused_naming_the_file_and_the_problem(tmp_path, images, classes, change, message):
    arrays = {
        "imgs": images,
        "latents_classes": classes,
        "latents_values": classes.astype(np.float64),
        "metadata": np.array({"x": 1}, dtype=object),
    }
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as error:
        load_stored(settings(path))
    assert str(path) in str(error.value) and message in str(error.value)


def test_unreadable_and_truncated_files_are_refused_naming_the_file(tmp_path, dsprites_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=f"{junk}: cannot be read as an .npz file"):
        load_stored(settings(junk))
    with pytest.raises(DataError, match="no such file"):
        load_stored(settings(tmp_path / "missing.npz"))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(dsprites_path.read_bytes()[: dsprites_path.stat().st_size // 2])
    with pytest.raises(DataError, match=str(cut)):
        load_stored(settings(cut))
    # A member that is corrupted inside an intact archive: its CRC or inflate fails while streaming.
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(dsprites_path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data[:-200] if item.filename == "imgs.npy" else data)
    with pytest.raises(DataError, match=f"{broken}: array 'imgs'"):
        load_stored(settings(broken))


def test_the_pickled_metadata_is_never_unpickled(tmp_path, images, classes):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('metadata was unpickled')",))

    path = tmp_path / "hostile.npz"
    np.savez(path, imgs=images, latents_classes=classes, latents_values=classes.astype(float),
             metadata=np.array([Boom()], dtype=object))
    assert load_stored(settings(path)).factor_sizes == SIZES[1:]


def test_own_rgb_grey_level_file_in_any_row_order_reads_back(tmp_path, images, classes, procedural):
    order = np.random.default_rng(1).permutation(len(classes))
    rgb = np.stack([images * 200, images * 100, images * 50], axis=-1).astype(np.uint8)
    path = byo.write(tmp_path / "own.npz", rgb[order], classes[order, 1:], ["a", "b", "c", "d", "e"])
    dataset = make_dataset(settings(path, "npz"))
    assert dataset.factor_names == ("a", "b", "c", "d", "e") and dataset.image_shape == (3, 64, 64)
    assert not dataset.stored.bits and dataset.complete_grid  # grey levels: one byte a value
    factors = dataset.sample_factors(100, np.random.default_rng(0))
    expected = procedural.observations(factors) * torch.tensor([200, 100, 50]).view(1, 3, 1, 1) / 255
    torch.testing.assert_close(dataset.observations(factors), expected)


def test_own_file_with_an_incomplete_grid_serves_only_its_rows_and_refuses_the_grid_metrics(
    tmp_path, images, classes, procedural
):
    keep = np.random.default_rng(2).permutation(len(classes))[:1000]
    path = byo.write(tmp_path / "partial.npz", images[keep].astype(bool), classes[keep, 1:], NAMES)
    dataset = make_dataset(settings(path, "npz"))
    assert dataset.stored.bits and not dataset.complete_grid
    present = {tuple(c) for c in classes[keep, 1:]}
    factors = dataset.sample_factors(500, np.random.default_rng(0))
    assert {tuple(f) for f in factors} <= present
    on_device = dataset.sample_factors_torch(500, torch.Generator().manual_seed(0))
    assert {tuple(f) for f in on_device.tolist()} <= present
    assert torch.equal(dataset.observations(factors), procedural.observations(factors))
    absent = next(c for c in classes[:, 1:] if tuple(c) not in present)
    with pytest.raises(ValueError, match="no image has the factor classes"):
        dataset.observations(absent[None])
    eval_settings = EvalSettings(preset="fast", metrics=("beta_vae", "mig"))
    with pytest.raises(ValueError, match=r"not a full Cartesian product .* beta_vae fix one factor"):
        run_evaluation(BetaVAE(4), dataset, eval_settings, np.random.default_rng(0))
    mig_only = EvalSettings(preset="fast", metrics=("mig",), overrides={"mig": {"num_train": 300}})
    assert "mig" in run_evaluation(BetaVAE(4), dataset, mig_only, np.random.default_rng(0)).scores


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"factor_names": None}, "no array 'factor_names'"),
        ({"images": "float"}, "images is float32"),
        ({"factor_classes": "float"}, "factor_classes is float64"),
        ({"factor_names": ["a", "b"]}, "factor_names is <U1 (2,)"),
        ({"factor_names": ["a", "a", "b", "c", "d"]}, "must be distinct"),
        ({"factor_classes": "duplicate"}, "have the same factor classes"),
        ({"factor_classes": "gap"}, "factor 0 has classes up to 3 but none with class [2]"),
    ],
)
def test_a_bad_own_file_is_refused_naming_the_file_and_the_problem(tmp_path, images, classes, arrays, message):
    content = {"images": images, "factor_classes": classes[:, 1:].copy(), "factor_names": np.array(NAMES)}
    for key, value in arrays.items():
        if value is None:
            content.pop(key)
        elif value == "float":
            content[key] = content[key].astype(np.float32 if key == "images" else np.float64)
        elif value == "duplicate":
            content[key][1] = content[key][0]
        elif value == "gap":
            content[key][:, 0] = np.where(content[key][:, 0] == 2, 3, content[key][:, 0])
        else:
            content[key] = np.array(value)
    path = tmp_path / "own.npz"
    np.savez(path, **content)
    with pytest.raises(DataError) as error:
        load_stored(settings(path, "npz"))
    assert str(path) in str(error.value) and message in str(error.value)


def test_settings_are_checked_against_the_file_headers(tmp_path, dsprites_path, images, classes):
    check_settings(settings(dsprites_path, ground_truth=("scale", "posX"), variant="noisy"))
    with pytest.raises(DataError, match="'colour', not among its factors"):
        check_settings(settings(dsprites_path, ground_truth=("colour",)))
    rgb = byo.write(tmp_path / "rgb.npz", np.repeat(images[..., None], 3, axis=3), classes[:, 1:], NAMES)
    with pytest.raises(DataError, match="color variant needs single-channel images, these have 3"):
        check_settings(settings(rgb, "npz", variant="color"))


def test_color_and_noisy_variants_follow_the_study(dsprites_path, procedural):
    color = make_dataset(settings(dsprites_path, variant="color"))
    factors = color.sample_factors(64, np.random.default_rng(0))
    plain = procedural.observations(factors)
    noisy = make_dataset(settings(dsprites_path, variant="noisy"))
    assert color.image_shape == noisy.image_shape == (3, 64, 64)
    assert not color.deterministic and not noisy.deterministic
    x = color.observations(factors, torch.Generator().manual_seed(0))
    assert torch.equal(x, color.observations(factors, torch.Generator().manual_seed(0)))  # seeded
    assert not torch.equal(x, color.observations(factors, torch.Generator().manual_seed(1)))
    assert torch.equal(x == 0, (plain == 0).expand_as(x))  # background stays black, the sprite is coloured
    on = x.permute(1, 0, 2, 3)[:, plain[:, 0] == 1].reshape(3, -1)
    assert 0.5 <= float(on.min()) and float(on.max()) <= 1.0
    assert len(torch.unique(x.amax(dim=(2, 3)), dim=0)) == 64  # a colour per observation
    y = noisy.observations(factors, torch.Generator().manual_seed(0))
    assert torch.equal(y[plain.expand_as(y) == 1], torch.ones(int((plain == 1).sum()) * 3))  # white sprite
    background = y[plain.expand_as(y) == 0]
    assert 0.45 < float(background.mean()) < 0.55 and float(background.min()) >= 0.0


def test_ground_truth_without_shape_hides_it_from_the_metrics_but_not_the_images(procedural):
    dataset = make_dataset(DataSettings(ground_truth=("scale", "orientation", "posX", "posY")))
    assert dataset.factor_names == ("scale", "orientation", "posX", "posY")
    assert dataset.factor_sizes == (6, 40, 32, 32) and not dataset.deterministic
    factors = np.tile([[5, 3, 16, 16]], (300, 1))
    images = dataset.observations(factors, torch.Generator().manual_seed(0))
    shapes = {procedural_shape for procedural_shape in range(3)
              if any(torch.equal(img, procedural.observations([[procedural_shape, 5, 3, 16, 16]])[0]) for img in images)}
    assert shapes == {0, 1, 2}  # every shape appears, drawn at random per observation
    assert dataset.sample_factors(10, np.random.default_rng(0)).shape == (10, 4)
    with pytest.raises(DataError, match="color is not one"):
        make_dataset(DataSettings(ground_truth=("color",)))


def test_evaluation_encodes_every_observation_of_a_random_variant_and_caches_a_deterministic_one(dsprites_path):
    model = BetaVAE(4, channels=3)
    dataset = make_dataset(settings(dsprites_path, variant="color"))
    cache = CodeCache(model, dataset, generator=torch.Generator().manual_seed(0))
    factors = np.zeros((10, 5), dtype=np.int64)  # one cell asked ten times: ten colours, ten codes
    mu, _ = cache.lookup(factors)
    assert cache.encoded == 10 and len(np.unique(mu[:, 0])) == 10
    plain = CodeCache(BetaVAE(4), make_dataset(settings(dsprites_path)))
    mu, _ = plain.lookup(factors)
    assert plain.encoded == 1 and len(np.unique(mu[:, 0])) == 1
    eval_settings = EvalSettings(preset="fast", metrics=("mig", "sap"), overrides={"mig": {"num_train": 200},
                                                                                  "sap": {"num_train": 200, "num_test": 100}})
    first = run_evaluation(model, dataset, eval_settings, np.random.default_rng(3))
    again = run_evaluation(model, dataset, eval_settings, np.random.default_rng(3))
    assert first.scores == again.scores and first.encoded == 200 + 100  # reproducible from the rng alone


def test_a_stored_dataset_on_the_cpu_indexes_the_stored_array_in_place(dsprites_path):
    stored = load_stored(settings(dsprites_path))
    dataset = StoredDataset(stored)
    assert not stored.pixels.flags.writeable
    assert dataset._pixels.data_ptr() == stored.pixels.ctypes.data  # noqa: SLF001 - the point of the test
