"""Exported model folders: exact round trip, and every corrupted or mismatched file refused by name."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainables import exported
from trainables.exported import ExportError, load_exported, save_exported, write_manifest
from trainables.model import BetaVAE

LATENTS = 3
OBJECTIVE = {"kind": "dip_vae_i", "weights": {"lambda_od": 5.0}}


def make_folder(folder: Path, latent_dim: int = LATENTS, seed: int = 0) -> tuple[Path, BetaVAE]:
    torch.manual_seed(seed)
    model = BetaVAE(latent_dim).eval()
    config = {"model": {"latent_dim": latent_dim, "channels": 1}, "objective": OBJECTIVE, "seed": seed}
    save_exported(folder, model.state_dict(), config)
    exported.write_json(folder / exported.METRICS_FILE, {"final": {"recon": 1.0}})
    (folder / exported.CARD_FILE).write_text("# card\n", encoding="utf-8")
    write_manifest(folder)
    return folder, model


@pytest.fixture
def folder_and_model(tmp_path):
    return make_folder(tmp_path / "model")


def images(n: int = 5) -> torch.Tensor:
    return (torch.rand(n, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.7).float()


def test_round_trip_gives_the_same_codes_and_images(folder_and_model):
    folder, model = folder_and_model
    loaded = load_exported(folder)
    x = images()
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        recon = torch.sigmoid(model.decoder(mu))
    assert loaded.latent_dim == LATENTS
    assert (loaded.objective, loaded.weights) == ("dip_vae_i", {"lambda_od": 5.0})
    assert loaded.configuration.label() == "dip_vae_i lambda_od=5"
    assert torch.equal(loaded.encode(x), mu)
    assert torch.equal(loaded.posterior(x)[1], logvar)
    assert torch.equal(loaded.decode(mu), recon)
    assert torch.equal(loaded.reconstruct(x), recon)
    grid = loaded.traverse(x[:2], latent=1, values=[-1.0, 0.0, 2.0])
    assert grid.shape == (2, 3, 1, 64, 64)
    z = mu[:2].clone()
    z[:, 1] = 2.0
    with torch.no_grad():  # decoded in a batch of another size: equal up to float rounding
        torch.testing.assert_close(grid[:, 2], torch.sigmoid(model.decoder(z)), rtol=1e-6, atol=1e-6)
    assert loaded.metrics == {"final": {"recon": 1.0}}
    with pytest.raises(ValueError, match="out of range"):
        loaded.traverse(x, latent=LATENTS, values=[0.0])


@pytest.mark.parametrize(
    "name", [exported.WEIGHTS_FILE, exported.CONFIG_FILE, exported.METRICS_FILE, exported.CARD_FILE]
)
def test_a_corrupted_file_is_named(folder_and_model, name):
    folder, _ = folder_and_model
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=rf"{name}: sha256 .* does not match manifest.json"):
        load_exported(folder)


def test_a_missing_or_truncated_file_is_named(folder_and_model):
    folder, _ = folder_and_model
    weights = folder / exported.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ExportError, match=rf"{exported.WEIGHTS_FILE}: 1000 bytes, manifest.json says"):
        load_exported(folder)
    write_manifest(folder)  # a manifest that agrees with the truncated file: safetensors itself refuses it
    with pytest.raises(ExportError, match=rf"{exported.WEIGHTS_FILE}: not a readable safetensors file"):
        load_exported(folder)
    weights.unlink()
    with pytest.raises(ExportError, match=rf"{exported.WEIGHTS_FILE}: missing"):
        load_exported(folder)


def test_a_corrupted_or_missing_manifest_is_named(folder_and_model):
    folder, _ = folder_and_model
    manifest = folder / exported.MANIFEST_FILE
    manifest.write_text(manifest.read_text()[:-20])
    with pytest.raises(ExportError, match="manifest.json: not valid JSON"):
        load_exported(folder)
    manifest.unlink()
    with pytest.raises(ExportError, match="manifest.json: missing"):
        load_exported(folder)


def test_a_config_that_does_not_fit_the_weights_is_refused(folder_and_model):
    folder, _ = folder_and_model
    config = json.loads((folder / exported.CONFIG_FILE).read_text())
    config["model"]["latent_dim"] = LATENTS + 1
    exported.write_json(folder / exported.CONFIG_FILE, config)
    write_manifest(folder)
    with pytest.raises(ExportError, match=r"config.json \(latent_dim=4, channels=1\) does not fit model.safetensors"):
        load_exported(folder)


def test_weights_of_another_shape_are_refused_when_saving(tmp_path):
    weights = BetaVAE(2).state_dict()
    with pytest.raises(ExportError, match="does not fit"):
        save_exported(tmp_path / "m", weights, {"model": {"latent_dim": 3}, "objective": OBJECTIVE})


@pytest.mark.parametrize(
    ("capacity_max", "objective", "weights"),
    [(0.0, "beta_vae", {"beta": 8.0}), (25.0, "annealed_vae", {"gamma": 8.0, "c_max": 25.0})],
)
def test_a_folder_of_an_earlier_release_names_the_objective_it_trained(
    folder_and_model, capacity_max, objective, weights
):
    """config.json as releases before the objectives wrote it: the loss, beta and C_max."""
    folder, model = folder_and_model
    earlier = {
        "loss": "recon + beta * |KL - C(t)|, C(t) rising linearly to C_max over capacity_steps",
        "beta": 8.0,
        "capacity_max": capacity_max,
        "capacity_steps": 100000,
    }
    rewrite(folder, exported.CONFIG_FILE, lambda c: c.update(objective=earlier))
    loaded = load_exported(folder)
    assert (loaded.objective, loaded.weights) == (objective, weights)
    assert torch.equal(loaded.encode(images()), model.encoder(images())[0].detach())


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        (None, "config.json: no object 'objective'"),
        ({"kind": "vae", "weights": {}}, r"objective.kind = 'vae' is none of \['annealed_vae', "),
        (
            {"kind": "factor_vae", "weights": {"beta": 4.0}},
            r"objective.weights = \['beta'\]; factor_vae takes \['gamma'\]",
        ),
        (
            {"kind": "annealed_vae", "weights": {"gamma": 1000.0}},
            r"objective.weights = \['gamma'\]; annealed_vae takes \['gamma', 'c_max'\]",
        ),
        ({"kind": "beta_vae", "weights": [4.0]}, r"objective.weights = \[4.0\]; beta_vae takes \['beta'\]"),
        ({"kind": "beta_vae", "weights": {"beta": "4"}}, "objective.weights.beta = '4' must be a finite number"),
        ({"kind": "beta_vae", "weights": {"beta": True}}, "objective.weights.beta = True must be a finite number"),
        ({"beta": 4.0}, "objective.capacity_max = None must be a finite number"),
    ],
)
def test_an_objective_that_is_not_one_of_the_study_is_refused_by_key(folder_and_model, objective, message):
    folder, _ = folder_and_model
    rewrite(folder, exported.CONFIG_FILE, lambda c: c.update(objective=objective))
    with pytest.raises(ExportError, match=message):
        load_exported(folder)
    config = json.loads((folder / exported.CONFIG_FILE).read_text())
    with pytest.raises(ExportError, match=message):
        save_exported(folder.parent / "again", BetaVAE(LATENTS).state_dict(), config)


def test_an_export_folder_with_one_model_loads_it(tmp_path):
    folder, model = make_folder(tmp_path / "out" / "only")
    exported.write_json(tmp_path / "out" / exported.INDEX_FILE, {"models": [{"folder": "only"}]})
    assert torch.equal(load_exported(tmp_path / "out").encode(images()), model.encoder(images())[0].detach())


def test_replace_folder_refuses_an_existing_target_unless_forced(tmp_path):
    target, staging = tmp_path / "target", tmp_path / "staging"
    target.mkdir()
    (target / "old").write_text("old")
    staging.mkdir()
    (staging / "new").write_text("new")
    with pytest.raises(ExportError, match="exists"):
        exported.replace_folder(staging, target, force=False)
    exported.replace_folder(staging, target, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert [p.name for p in target.iterdir()] == ["new"]


def test_loading_needs_neither_ray_nor_mlflow():
    code = "import sys, trainables.exported; print(sorted(m for m in ('ray', 'mlflow', 'sweeper') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- folders from anyone: checked before anything is allocated or read outside them ----------


def rewrite(folder: Path, name: str, change) -> None:
    """Change a JSON file of the folder, then re-make the manifest so only the change is wrong."""
    path = folder / name
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))
    if name != exported.MANIFEST_FILE:
        write_manifest(folder)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(2**40, "1099511627776"), (0, "0"), (2.5, "2.5"), (True, "True"), ("3", "'3'"), (None, "None")],
)
def test_a_latent_size_out_of_bounds_is_refused_before_a_model_is_built(folder_and_model, value, shown):
    folder, _ = folder_and_model
    rewrite(folder, exported.CONFIG_FILE, lambda c: c["model"].update(latent_dim=value))
    message = rf"config.json: model.latent_dim = {re.escape(shown)} must be an integer from 1 to 1024"
    with pytest.raises(ExportError, match=message):
        load_exported(folder)


def test_channels_out_of_bounds_are_refused(folder_and_model):
    folder, _ = folder_and_model
    rewrite(folder, exported.CONFIG_FILE, lambda c: c["model"].update(channels=10**6))
    with pytest.raises(ExportError, match="config.json: model.channels = 1000000 must be an integer from 1 to 4"):
        load_exported(folder)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"bytes": float("inf")}, r"not valid JSON \(Infinity is not a number JSON allows\)"),
        ({"bytes": 1e300}, r"files.model.safetensors.bytes = 1e\+300 is not a size from 0 to"),
        ({"bytes": -1}, "files.model.safetensors.bytes = -1 is not a size from 0 to"),
        ({"bytes": 2**62}, f"files.model.safetensors.bytes = {2**62} is not a size from 0 to"),
        ({"sha256": ["x"]}, r"files.model.safetensors.sha256 = \['x'\] is not a sha256 hex digest"),
    ],
)
def test_a_manifest_with_absurd_values_is_named_with_its_key(folder_and_model, entry, message):
    folder, _ = folder_and_model
    rewrite(folder, exported.MANIFEST_FILE, lambda m: m["files"][exported.WEIGHTS_FILE].update(entry))
    with pytest.raises(ExportError, match=rf"manifest.json: .*{message}"):
        load_exported(folder)


def test_an_oversized_json_file_is_refused_before_it_is_read(folder_and_model, monkeypatch):
    folder, _ = folder_and_model
    monkeypatch.setattr(exported, "MAX_JSON_BYTES", 100)
    with pytest.raises(ExportError, match=r"manifest.json: \d+ bytes, more than the 100 such a file may have"):
        load_exported(folder)


def test_names_and_symlinks_leading_out_of_the_folder_are_refused(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of any export")
    folder, _ = make_folder(tmp_path / "out" / "only")
    index = tmp_path / "out" / exported.INDEX_FILE
    for name in ("../../secret.txt", "/etc", "only/../.."):
        exported.write_json(index, {"models": [{"folder": name}]})
        refused = r"index.json: (models.0.folder = .* is not a folder of|names a file outside)"
        with pytest.raises(ExportError, match=refused):
            load_exported(tmp_path / "out")
    (tmp_path / "out" / "elsewhere").symlink_to(tmp_path)
    exported.write_json(index, {"models": [{"folder": "elsewhere"}]})
    with pytest.raises(ExportError, match="index.json: 'elsewhere' is a symlink"):
        load_exported(tmp_path / "out")

    # A manifest listing a file through a symlink, or outside the folder.
    (folder / "peek").symlink_to(outside)
    manifest = json.loads((folder / exported.MANIFEST_FILE).read_text())
    for name in ("peek", "../../secret.txt"):
        files = {**manifest["files"], name: {"sha256": "0" * 64, "bytes": outside.stat().st_size}}
        (folder / exported.MANIFEST_FILE).write_text(json.dumps({**manifest, "files": files}))
        with pytest.raises(ExportError, match=r"manifest.json: ('peek' is a symlink|names a file outside)"):
            load_exported(folder)
    # The weights themselves replaced by a symlink to a copy elsewhere: refused, not followed.
    (folder / "peek").unlink()
    (folder / exported.MANIFEST_FILE).write_text(json.dumps(manifest))
    moved = tmp_path / "weights.safetensors"
    (folder / exported.WEIGHTS_FILE).rename(moved)
    (folder / exported.WEIGHTS_FILE).symlink_to(moved)
    with pytest.raises(ExportError, match="manifest.json: 'model.safetensors' is a symlink"):
        load_exported(folder)
