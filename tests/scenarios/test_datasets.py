"""A tiny sweep on each of the study's published datasets, from small files in their authors' formats, gets
every metric its grid allows; a dataset larger than a node's object store is refused before anything starts.

The sweeps run back to back through `sweeper launch` in this process, on one
Ray started once for them all (launch joins a Ray that is already up, as on a
cluster), to keep the module cheap. Every grid here is complete and each of
its factors has at least two values, so every metric applies, the downstream
task included (named in eval.metrics, as a config must name it).

MPI3D is not among them: its files carry no labels, so its reader accepts only
the published grids (1,036,800 or 460,800 images, 12.7 GB or 5.6 GB) and no
tiny MPI3D file can exist.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.cli import app
from tests.trainables.data.published import (
    write_cars3d,
    write_noise_background,
    write_shapes3d,
    write_shapes3d_declared,
    write_smallnorb,
)
from trainables.settings import DEFAULT_METRICS, metric_outputs

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sweep

STORE_BYTES = 200 * 10**6  # the node's object store: far more than the tiny files, far less than Shapes3D
EVERY_METRIC = (*DEFAULT_METRICS, "downstream")
TINY = [
    "--set", "search.seeds=1", "--set", "search.objectives.beta_vae.beta=[4.0]",
    "--set", "training.steps=10", "--set", "training.batch_size=16", "--set", "training.report_every=10",
    "--set", "training.checkpoint_every=10", "--set", "eval.every=10",
    "--set", f"eval.metrics=[{', '.join(EVERY_METRIC)}]",
    "--set", "eval.overrides={beta_vae: {batch_size: 16, num_train: 60, num_eval: 30}, "
    "factor_vae: {batch_size: 16, num_train: 60, num_eval: 30, num_variance_estimate: 300}, "
    "mig: {num_train: 100}, dci: {num_train: 100, num_test: 50}, sap: {num_train: 100, num_test: 50}, "
    "modularity: {num_train: 100, num_test: 50}, unsupervised: {num_train: 100}, "
    "downstream: {num_train: 100, num_test: 50}}",
]  # fmt: skip
# The downstream task at 100 train codes runs its train sizes 10 and 100; the sample efficiency needs 10,000.
DOWNSTREAM = {
    f"downstream_{predictor}_{score}_{size}"
    for predictor in ("logreg", "gbt")
    for score in ("accuracy", "min_accuracy")
    for size in (10, 100)
}
SCORES = {f"disent/{s}" for m in DEFAULT_METRICS for s in metric_outputs(m)} | {f"disent/{s}" for s in DOWNSTREAM}


def datasets(folder: Path) -> dict[str, tuple[list[str], int]]:
    """Each dataset's data settings, over a small file in its published format, and the bytes of images a
    node holds for it, worked out from its grid: images x 64 x 64 x channels, a byte per value."""
    scream = folder / "background.png"
    write_noise_background(scream, 76, 84)
    # floor hue 2, wall hue 3, object hue 2, scale 2, shape 2, orientation 3; RGB
    shapes3d = ["data.name=shapes3d", f"data.path={write_shapes3d(folder / '3dshapes.h5')}"]
    # category 2, elevation 2, azimuth 3, lighting 2, with 4 instances each; grey
    smallnorb = ["data.name=smallnorb", f"data.path={write_smallnorb(folder / 'smallnorb')}"]
    # elevation 4, azimuth 24, 2 cars; RGB
    cars3d = ["data.name=cars3d", f"data.path={write_cars3d(folder / 'cars', cars=2)}"]
    return {
        "shapes3d": (shapes3d, 2 * 3 * 2 * 2 * 2 * 3 * 64 * 64 * 3),
        "smallnorb": (smallnorb, 2 * 2 * 3 * 2 * 4 * 64 * 64),
        "cars3d": (cars3d, 4 * 24 * 2 * 64 * 64 * 3),
        "scream": (["data.variant=scream", f"data.background={scream}"], 0),  # procedural dSprites: nothing stored
    }


def launch(name: str, data: list[str]):
    """`sweeper launch configs/smoke.yaml` of one tiny model on `data`, as experiment `name`."""
    sets = [arg for setting in [f"name={name}", *data] for arg in ("--set", setting)]
    return CliRunner().invoke(app, ["launch", str(REPO / "configs" / "smoke.yaml"), *sets, *TINY])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Every dataset swept in one folder and one MLflow store, on one Ray: (folder, {name: (result, bytes)})."""
    folder = tmp_path_factory.mktemp("datasets")
    environment = dict(os.environ)  # launch sets variables for Tune and MLflow in its process, this one
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("RAY_ADDRESS", raising=False)
        ray.init(
            num_cpus=2, object_store_memory=STORE_BYTES, include_dashboard=False, log_to_driver=False,
            configure_logging=False,
        )  # fmt: skip
        try:
            results = {name: (launch(name, data), size) for name, (data, size) in datasets(folder).items()}
            # Were the node not checked, the reader would still refuse this file from its labels before reading
            # an image (one is missing from the grid), so the test never allocates the 5.9 GB it declares.
            large = write_shapes3d_declared(folder / "3dshapes-full.h5", 479_999)
            results["too-large"] = (launch("too-large", ["data.name=shapes3d", f"data.path={large}"]), 0)
        finally:
            ray.shutdown()
            os.environ.clear()
            os.environ.update(environment)
    return folder, results


@pytest.mark.parametrize("name", ["shapes3d", "smallnorb", "cars3d", "scream"])
def test_a_tiny_sweep_on_each_dataset_logs_every_metric_its_grid_allows(swept, name):
    folder, results = swept
    result, stored = results[name]
    assert result.exit_code == 0, result.output[-3000:]
    line = f"({stored:,} bytes) in Ray's object store on each node" if stored else "nothing in Ray's object store"
    assert line in result.output
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    (trial,) = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert trial.info.status == "FINISHED"
    scores = {key: value for key, value in trial.data.metrics.items() if key.startswith("disent/")}
    assert set(scores) == SCORES
    assert all(math.isfinite(value) for value in scores.values()), scores


def test_a_dataset_larger_than_a_nodes_object_store_is_refused_before_anything_starts(swept):
    folder, results = swept
    result, _ = results["too-large"]
    assert result.exit_code == 3, result.output[-3000:]
    assert 479_999 * 64 * 64 * 3 == 5_898_227_712
    assert "dataset: 5.9 GB (5,898,227,712 bytes) in Ray's object store on each node" in result.output  # the plan
    assert "takes 5.9 GB (5,898,227,712 bytes) of Ray's object store on every node" in result.output
    assert "1 of 1 Ray nodes have a smaller one" in result.output and ": 200 MB." in result.output
    assert not any(p.name.startswith("too-large-") for p in (folder / "sweeps").iterdir())  # no sweep folder...
    assert MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_experiment_by_name("too-large") is None  # ...nor run
