"""`sweeper export`: a trained trial's model out of a sweep and back, exactly; bad input refused, nothing left."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.analyse.checkpoints import encode, load_model, observation_set
from sweeper.cli import app
from sweeper.errors import ConfigError
from sweeper.export.package import data_record
from sweeper.export.registry import load_model_uri
from trainables import exported
from trainables.exported import load_exported
from trainables.settings import DataSettings, TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration, model_folder

runner = CliRunner()
BETA_8 = Configuration.of("beta_vae", {"beta": 8.0})
SWEEP = "fake-20260101-000000-abcd"  # tests/sweeper/conftest.py's SWEEP_ID
LATENTS = 4  # and its latent size


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real trial's model after a few steps, and its checkpoint folder: beta_vae beta=8, seed 0."""
    settings = TrialSettings.model_validate(
        {
            "model": {"latent_dim": LATENTS},
            "training": {"steps": 2, "batch_size": 4, "device": "cpu", "amp": False},
            "eval": {"metrics": []},
        }
    )
    trainer = Trainer(settings, BETA_8, seeds=(0,))
    trainer.train(2)
    folder = tmp_path_factory.mktemp("trained") / "checkpoint"
    trainer.save(folder)
    return trainer.model(0).eval(), folder / model_folder(0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, make_sweep, two_by_three, trial_metrics, trained, runs_by_name):
    """beta_vae beta 1 and 8 x 3 seeds; beta 8 seed 0 (the best by MIG) is the trained model; beta 4 has no
    checkpoint; beta 1 seed 0's checkpoint says it is seed 5's."""
    folder = tmp_path_factory.mktemp("sweep")
    trials = two_by_three()
    best = {k: v for k, v in trials[3].items() if k != "init"}
    assert (best["configuration"], best["seed"]) == (BETA_8, 0)
    trials[3] = {**best, "checkpoint": str(trained[1])}
    trials[0]["state"] = {"seed": 5}
    beta_4 = Configuration.of("beta_vae", {"beta": 4.0})
    trials.append({"configuration": beta_4, "seed": 0, "metrics": trial_metrics(50.0, 0.01, 0.0)})
    record = make_sweep(folder, trials)
    return folder, record, runs_by_name(MlflowClient(record.tracking_uri), record)


def export(sweep, out: Path, *args: str):
    folder = sweep[0]
    return runner.invoke(app, ["export", SWEEP, "--to", str(out), "--storage", str(folder / "sweeps"), *args])


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_round_trip_gives_the_trials_codes_and_reconstructions(sweep, trained, tmp_path):
    model, checkpoint = trained
    result = export(sweep, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "best trial by disent/mig" in result.output
    (model_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert model_dir.name.startswith("beta_vae_beta=8_seed=0_")
    loaded = load_exported(tmp_path / "out")  # the export folder of one model loads it
    assert (loaded.objective, loaded.weights) == ("beta_vae", {"beta": 8.0})
    x = observation_set(16)
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        recon = torch.sigmoid(model.decoder(mu))
    assert torch.equal(loaded.encode(x), mu)
    assert torch.equal(loaded.posterior(x)[1], logvar)
    assert torch.equal(loaded.reconstruct(x), recon)
    # as the sweep's own tools compute them from the checkpoint
    codes, _ = encode(load_model(str(checkpoint)), x)
    np.testing.assert_array_equal(encode(loaded.model, x)[0], codes)

    config = json.loads((model_dir / exported.CONFIG_FILE).read_text())
    assert config["model"]["latent_dim"] == LATENTS and config["seed"] == 0
    assert config["objective"] == {"kind": "beta_vae", "weights": {"beta": 8.0}}  # capacity_steps: AnnealedVAE's
    assert config["data"]["name"] == "dsprites"
    assert config["training"]["steps_done"] == 2
    assert {"torch", "safetensors"} <= config["library_versions"]["exported_with"].keys()
    metrics = json.loads((model_dir / exported.METRICS_FILE).read_text())
    assert metrics["final"]["disent/mig"] == pytest.approx(0.7)
    stats = metrics["configuration"]["seed_statistics"]["disent/mig"]
    assert stats["n"] == 3 and stats["median"] == pytest.approx(0.5) and stats["max"] == pytest.approx(0.7)
    assert metrics["configuration"]["rank_among_seeds"] == {"score": "disent/mig", "mode": "max", "rank": 1, "of": 3}
    assert (metrics["configuration"]["objective"], metrics["configuration"]["weights"]) == ("beta_vae", {"beta": 8.0})
    card = (model_dir / exported.CARD_FILE).read_text()
    assert "# beta_vae beta=8 seed=0" in card and "- objective: `beta_vae`; beta = 8\n" in card
    assert "](traversal.png)" in card and "| disent/mig | 0.7 | 0.5 |" in card
    manifest = json.loads((model_dir / exported.MANIFEST_FILE).read_text())["files"]
    files = (exported.WEIGHTS_FILE, exported.CONFIG_FILE, exported.METRICS_FILE, exported.CARD_FILE)
    assert sorted(manifest) == sorted([*files, exported.TRAVERSAL_FILE])
    for name, entry in manifest.items():
        assert entry["sha256"] == exported.sha256_of(model_dir / name)
    assert leftovers(tmp_path) == []


def test_median_seed_of_the_best_configuration(sweep, tmp_path):
    result = export(sweep, tmp_path / "out", "--median-seed")
    assert result.exit_code == 0, result.output
    assert [p.name.rsplit("_", 1)[0] for p in (tmp_path / "out").iterdir() if p.is_dir()] == ["beta_vae_beta=8_seed=2"]


def test_an_existing_folder_is_refused_unless_forced(sweep, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = export(sweep, out)
    assert result.exit_code == 2
    assert "exists" in result.output and "--force" in result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    result = export(sweep, out, "--force")
    assert result.exit_code == 0, result.output
    assert "mine.txt" not in [p.name for p in out.iterdir()]
    assert leftovers(tmp_path) == []


def test_a_run_without_checkpoint_fails_and_leaves_nothing(sweep, tmp_path):
    _, _, runs = sweep
    good, bad = runs["beta_vae beta=8 seed=1"], runs["beta_vae beta=4 seed=0"]
    result = export(sweep, tmp_path / "out", "--run", good, "--run", bad)
    assert result.exit_code == 3
    assert f"run {bad}" in result.output and "no checkpoint" in result.output
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_unknown_run_id_exits_2(sweep, tmp_path):
    result = export(sweep, tmp_path / "out", "--run", "nope")
    assert result.exit_code == 2 and "no trial run nope" in result.output
    assert not (tmp_path / "out").exists()


def test_a_failed_run_and_a_sweep_with_no_finished_trial_are_refused(
    tmp_path_factory, make_sweep, trial_metrics, runs_by_name, tmp_path
):
    folder = tmp_path_factory.mktemp("failed")
    beta_1 = Configuration.of("beta_vae", {"beta": 1.0})
    failed = [
        {"configuration": beta_1, "seed": s, "status": "FAILED", "error": "boom", "metrics": trial_metrics(1, 0.1, 0.1)}
        for s in range(2)
    ]
    record = make_sweep(folder, failed)
    run = runs_by_name(MlflowClient(record.tracking_uri), record)["beta_vae beta=1 seed=1"]
    storage = ["--storage", str(folder / "sweeps")]
    chosen = runner.invoke(app, ["export", SWEEP, "--to", str(tmp_path / "out"), "--run", run, *storage])
    assert chosen.exit_code == 2, chosen.output
    assert f"only finished trials are exported: beta_vae beta=1 seed=1 (run {run}) is FAILED" in chosen.output
    best = runner.invoke(app, ["export", SWEEP, "--to", str(tmp_path / "out"), *storage])
    assert best.exit_code == 3, best.output
    assert "none of the sweep's trials has finished; nothing to export" in best.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "uri", ["models:/", "models:/beta-vae", "models:/@champion", "models:/beta-vae@", "models:/beta-vae/1/2",
            "models:/beta-vae/one"],
)  # fmt: skip
def test_a_malformed_models_uri_is_refused_naming_the_form(uri, tmp_path):
    # A version that is not a number reached the registry and came back as "model not found".
    with pytest.raises(ConfigError) as failure:
        load_model_uri(uri, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert str(failure.value) == f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION (a number or latest)"
    assert not (tmp_path / "mlflow.db").exists()


def test_picks_need_a_selection_then_export_each_picked_run(sweep, tmp_path):
    _, record, runs = sweep
    result = export(sweep, tmp_path / "none", "--picks", "all")
    assert result.exit_code == 3 and "sweeper select" in result.output
    client = MlflowClient(record.tracking_uri)
    picked = [runs["beta_vae beta=1 seed=2"], runs["beta_vae beta=8 seed=2"]]
    try:
        for run in picked:
            client.set_tag(run, "selected", "tradeoff")
            client.set_tag(run, "role", "median_seed")
        result = export(sweep, tmp_path / "out", "--picks", "tradeoff")
        assert result.exit_code == 0, result.output
        index = json.loads((tmp_path / "out" / exported.INDEX_FILE).read_text())
        assert sorted(m["run_id"] for m in index["models"]) == sorted(picked)
        with pytest.raises(exported.ExportError, match="holds 2 models"):
            load_exported(tmp_path / "out")
        result = export(sweep, tmp_path / "reg", "--picks", "all", "--register", "x")
        assert result.exit_code == 2 and "--register takes one model" in result.output
    finally:
        for run in picked:
            client.delete_tag(run, "selected")
            client.delete_tag(run, "role")


def test_register_with_alias_and_load_from_the_registry(sweep, trained, tmp_path):
    _, record, runs = sweep
    result = export(sweep, tmp_path / "out", "--register", "beta-vae", "--alias", "champion")
    assert result.exit_code == 0, result.output
    client = MlflowClient(record.tracking_uri, registry_uri=record.tracking_uri)
    version = client.get_model_version_by_alias("beta-vae", "champion")
    assert version.run_id == runs["beta_vae beta=8 seed=0"] and str(version.version) == "1"
    assert "champion" in client.get_registered_model("beta-vae").aliases
    x = observation_set(8)
    local = load_exported(tmp_path / "out")
    for uri in ("models:/beta-vae@champion", "models:/beta-vae/1"):
        remote = load_model_uri(uri, tracking_uri=record.tracking_uri)
        assert torch.equal(remote.encode(x), local.encode(x))
        assert torch.equal(remote.reconstruct(x), local.reconstruct(x))
    assert torch.equal(local.encode(x), trained[0].encoder(x)[0].detach())


def test_corrupting_any_exported_file_names_it_on_load(sweep, tmp_path):
    import shutil

    result = export(sweep, tmp_path / "out")
    assert result.exit_code == 0, result.output
    (model_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    names = sorted(p.name for p in model_dir.iterdir())
    assert len(names) == 6
    for name in names:
        copy = tmp_path / f"copy-{name}"
        shutil.copytree(model_dir, copy)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(exported.ExportError) as failure:
            load_exported(copy)
        assert name in str(failure.value) and str(copy) in str(failure.value)


def test_a_truncated_checkpoint_is_named(trained, tmp_path):
    import shutil

    from sweeper.errors import EnvironmentProblem
    from sweeper.export.package import read_checkpoint

    copy = tmp_path / "checkpoint"
    shutil.copytree(trained[1], copy)
    weights = copy / exported.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:500])
    row = {"checkpoint": str(copy), "objective": "beta_vae", "beta": 8.0, "seed": 0, "run_id": "r1"}
    with pytest.raises(EnvironmentProblem, match=f"{weights}: not a readable safetensors file"):
        read_checkpoint(row)


def test_a_checkpoint_of_another_model_is_refused(sweep, tmp_path):
    _, _, runs = sweep
    run = runs["beta_vae beta=1 seed=0"]
    result = export(sweep, tmp_path / "out", "--run", run)
    assert result.exit_code == 3, result.output
    assert f"beta_vae beta=1 seed=0 (run {run}): checkpoint " in result.output
    identity = "objective=beta_vae, weights={'beta': 1.0}, seed="
    assert f"belongs to {identity}5, not to {identity}0" in result.output
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_sweep_of_an_earlier_release_exports_and_loads_as_its_objective(
    tmp_path_factory, make_sweep, earlier_release, tmp_path
):
    """Params beta/capacity, a root-level checkpoint whose state names beta and C_max: AnnealedVAE gamma 4."""
    folder = tmp_path_factory.mktemp("earlier")
    make_sweep(folder, earlier_release(), legacy=True)
    result = runner.invoke(app, ["export", SWEEP, "--to", str(tmp_path / "out"), "--storage", str(folder / "sweeps")])
    assert result.exit_code == 0, result.output
    (model_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert model_dir.name.startswith("annealed_vae_gamma=4_c_max=25_seed=2_")  # the best by MIG
    config = json.loads((model_dir / exported.CONFIG_FILE).read_text())
    weights = {"gamma": 4.0, "c_max": 25.0}
    assert config["objective"] == {"kind": "annealed_vae", "weights": weights, "capacity_steps": 100}
    loaded = load_exported(model_dir)
    assert (loaded.objective, loaded.weights) == ("annealed_vae", {"gamma": 4.0, "c_max": 25.0})
    card = (model_dir / exported.CARD_FILE).read_text()
    assert "# annealed_vae gamma=4 c_max=25 seed=2" in card
    assert "- objective: `annealed_vae`; gamma = 4, c_max = 25, capacity_steps = 100" in card


def test_force_never_replaces_the_storage_or_the_sweep_folder(sweep, tmp_path):
    folder, record, _ = sweep
    storage = folder / "sweeps"
    link = tmp_path / "link"
    link.symlink_to(storage)
    before = sorted(p.relative_to(storage) for p in storage.rglob("*"))
    targets = {
        storage: "it holds the storage folder",
        folder: "it holds the storage folder",
        storage / SWEEP: "it lies inside the storage folder",
        link: "it holds the storage folder",  # a symlink to it, resolved
        storage / SWEEP / "models": "it lies inside the storage folder",
        link / SWEEP / "models": "it lies inside the storage folder",
    }
    for target, message in targets.items():
        result = export(sweep, target, "--force")
        assert result.exit_code == 2, (target, result.output)
        assert f"--to {target}: {message}" in result.output and "export to a folder outside it" in result.output
    assert sorted(p.relative_to(storage) for p in storage.rglob("*")) == before
    assert leftovers(tmp_path) == [] and leftovers(folder) == []


def test_a_target_under_a_file_is_a_clear_error(sweep, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    result = export(sweep, afile / "sub")
    assert result.exit_code == 2, result.output
    assert f"--to {afile / 'sub'}: {afile} is a file, not a folder" in result.output
    assert afile.read_text() == "not a folder"


def test_the_data_record_says_which_published_file_subset_and_background_a_model_learned():
    record = data_record(DataSettings(name="mpi3d", path="/data/mpi3d_real.npz", subset="real"), 3)
    assert record["kind"] == "mpi3d real" and record["subset"] == "real" and record["path"] == "/data/mpi3d_real.npz"
    record = data_record(DataSettings(variant="scream", background="/data/scream.jpg"), 3)
    assert record["background"] == "/data/scream.jpg" and record["kind"].endswith(", scream variant")
