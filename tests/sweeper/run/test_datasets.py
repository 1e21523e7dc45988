"""Sweeps from dataset files on the embedded local Ray, and the file shared through the object store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.config import check_machine, validate_config
from sweeper.errors import ConfigError
from sweeper.run.datasets import node_bytes, with_dataset
from trainables.data import ProceduralDSprites, byo, dsprites_file, make_dataset
from tests.trainables.data.published import write_shapes3d
from trainables.settings import DEFAULT_METRICS, DataSettings, metric_outputs

REPO = Path(__file__).resolve().parents[3]
SIZES = (1, 3, 2, 4, 8, 8)  # a small grid in the original format: 1,536 images

# One short trial, every metric at small sizes.
TINY = [
    "--set", "search.seeds=1", "--set", "search.objectives.beta_vae.beta=[4.0]",
    "--set", "training.steps=20", "--set", "training.report_every=10", "--set", "training.checkpoint_every=20",
    "--set", "eval.every=20",
    "--set", "eval.overrides={beta_vae: {num_train: 100, num_eval: 50}, factor_vae: {num_train: 100, num_eval: 50, "
    "num_variance_estimate: 500}, dci: {num_train: 300, num_test: 150}}",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    classes = np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)
    images = ProceduralDSprites().observations(classes[:, 1:])[:, 0].numpy().astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(classes))
    return {
        "dsprites_file": dsprites_file.write(folder / "dsprites.npz", images, classes),
        "npz": byo.write(folder / "own.npz", images[order] * 255, classes[order, 1:], ["s", "c", "o", "x", "y"]),
    }


@pytest.mark.sweep
@pytest.mark.parametrize("name", ["dsprites_file", "npz"])
def test_a_sweep_from_a_file_reports_every_metric(tmp_path, sweeper_cli, files, name):
    args = ["launch", str(REPO / "configs" / "smoke.yaml"), "--set", f"data.name={name}",
            "--set", f"data.path={files[name]}", *TINY]
    done = sweeper_cli(args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    (trial,) = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert trial.info.status == "FINISHED"
    assert trial.data.params["data.name"] == name and trial.data.params["data.path"] == str(files[name])
    scores = {k for k in trial.data.metrics if k.startswith("disent/")}
    assert scores == {f"disent/{score}" for metric in DEFAULT_METRICS for score in metric_outputs(metric)}


def test_a_config_naming_a_missing_or_wrong_file_is_refused_with_the_key_and_file(tmp_path, files):
    base = {"name": "t", "search": {"beta": [1.0]}}

    def checked(data: dict):
        return check_machine(validate_config({**base, "data": data}, "cfg.yaml"), "cfg.yaml")

    with pytest.raises(ConfigError, match=r"data.path = '/nowhere/d.npz': no such file"):
        checked({"name": "npz", "path": "/nowhere/d.npz"})
    with pytest.raises(ConfigError, match=rf"data.path: {files['npz']}: not a dSprites file: no array 'imgs'"):
        checked({"name": "dsprites_file", "path": str(files["npz"])})
    with pytest.raises(ConfigError, match="data.path: required when name is 'npz'"):
        checked({"name": "npz"})
    # A file whose headers are fine but whose grid is not is refused when the sweep reads it, before any trial.
    partial = tmp_path / "partial.npz"
    with np.load(files["npz"]) as f:
        byo.write(partial, f["images"][:-5], f["factor_classes"][:-5], list(f["factor_names"]))
    config = checked({"name": "npz", "path": str(partial)})
    with pytest.raises(ConfigError, match=rf"eval.metrics: dataset file {partial}: its factor grid is not a full"):
        with_dataset(lambda config: None, config)


def test_the_plan_gets_the_bytes_a_node_holds_and_folders_and_backgrounds_are_checked(tmp_path, files, monkeypatch):
    base = {"name": "t", "search": {"beta": [1.0]}}

    def checked(data: dict):
        return check_machine(validate_config({**base, "data": data}, "cfg.yaml"), "cfg.yaml")

    config = validate_config({**base, "data": {"name": "dsprites_file", "path": str(files["dsprites_file"])}}, "c")
    assert node_bytes(config) == 1536 * 64 * 64 // 8  # bit-packed
    assert node_bytes(validate_config(base, "cfg.yaml")) == 0  # procedural: no file
    (tmp_path / "cars").mkdir()
    with pytest.raises(ConfigError, match=r"data.path: .*/cars: holds no .mat file"):  # a folder gets to its reader
        checked({"name": "cars3d", "path": str(tmp_path / "cars")})
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (120, 100)).save("scream.png")
    Image.new("RGB", (300, 60)).save("thin.png")
    scream = {"variant": "scream", "background": "scream.png"}
    config = checked(scream)
    assert config.data.background == str(tmp_path / "scream.png")  # absolute: trials run elsewhere
    with pytest.raises(ConfigError, match=r"data.background = 'nowhere.png': no such file"):
        checked({**scream, "background": "nowhere.png"})
    with pytest.raises(ConfigError, match=rf"data.background: {tmp_path / 'thin.png'}: 300 x 60 pixels"):
        checked({**scream, "background": "thin.png"})


@pytest.mark.parametrize("command", [["validate"], ["launch", "--dry-run"]])
def test_the_plan_says_how_much_of_each_nodes_object_store_the_dataset_takes(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_shapes3d(tmp_path / "3dshapes.h5")  # a 2 x 3 x 2 x 2 x 2 x 3 grid of 64 x 64 RGB images
    smoke = str(REPO / "configs" / "smoke.yaml")
    shapes3d = ["--set", "data.name=shapes3d", "--set", f"data.path={path}"]
    result = CliRunner().invoke(app, [*command, smoke, *shapes3d])
    assert result.exit_code == 0, result.output
    images = 2 * 3 * 2 * 2 * 2 * 3
    assert images * 64 * 64 * 3 == 1_769_472
    assert "  dataset: 1.77 MB (1,769,472 bytes) in Ray's object store on each node; " in result.output
    assert "the driver's machine holds it twice while it puts it there" in result.output
    procedural = CliRunner().invoke(app, [*command, smoke])
    assert "dataset: rendered in each trial (procedural dSprites); nothing in Ray's object store" in procedural.output


def test_launch_refuses_a_file_whose_grid_is_incomplete_and_leaves_nothing_behind(tmp_path, sweeper_cli, files):
    partial = tmp_path / "partial.npz"
    with np.load(files["npz"]) as f:
        byo.write(partial, f["images"][:-5], f["factor_classes"][:-5], list(f["factor_names"]))
    args = ["launch", str(REPO / "configs" / "smoke.yaml"), "--set", "data.name=npz", "--set", f"data.path={partial}",
            *TINY]
    done = sweeper_cli(args, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"dataset file {partial}: its factor grid is not a full" in done.stderr
    assert not (tmp_path / "sweeps").exists()  # no sweep folder...
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_experiment_by_name("smoke") is None  # ...and no MLflow run


def _where_the_pixels_live(refs: list) -> tuple[str, bool]:
    """In a worker: the mapping that holds the dataset's pixel tensor, and whether the array is read-only.

    The ref comes in a list, so the worker calls ray.get itself, as `tune.with_parameters` does."""
    stored = ray.get(refs[0])
    dataset = make_dataset(DataSettings(name="dsprites_file", path="/unused-in-the-worker"), "cpu", stored)
    address = dataset._pixels.data_ptr()  # noqa: SLF001 - where the images are is the point
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *rest = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= address < high:
            return (rest[-1] if len(rest) == 5 else "[anonymous]"), not stored.pixels.flags.writeable
    return "not mapped", False


@pytest.mark.sweep
def test_trials_on_a_node_read_the_stored_images_from_shared_memory_without_copying(files):
    from trainables.data import load_stored

    stored = load_stored(DataSettings(name="dsprites_file", path=str(files["dsprites_file"])))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ref = ray.put(stored)
        where = ray.get([ray.remote(_where_the_pixels_live).remote([ref]) for _ in range(2)])
    finally:
        ray.shutdown()
    for mapping, read_only in where:
        assert read_only
        assert "plasma" in mapping or mapping.startswith("/dev/shm"), mapping  # the node's object store
