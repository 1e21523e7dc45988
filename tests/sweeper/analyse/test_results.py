"""A sweep's trials read from MLflow into one Arrow table, found by folder or by tag."""

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from sweeper.analyse import results
from sweeper.analyse.results import locate_sweep, read_results, write_parquet
from sweeper.errors import EnvironmentProblem


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def sweep(folder, make_sweep, trial_metrics):
    trials = [
        {"beta": 8.0, "seed": 1, "metrics": trial_metrics(300, 0.5, 0.2), "checkpoint": "/nowhere/ckpt"},
        {"beta": 1.0, "seed": 0, "metrics": {"recon": 100.0, "kl": 9.0}},
        {"beta": 1.0, "seed": 1, "metrics": {"recon": 120.0}, "status": "FAILED", "error": "non-finite loss"},
        {"beta": 8.0, "seed": 0, "capacity": 5.0, "metrics": {**trial_metrics(310, 0.6, 0.3), "capacity": 2.5}},
    ]
    return make_sweep(folder, trials)


def test_every_trial_becomes_a_row_with_params_metrics_tags_and_nulls(sweep, folder):
    ref = locate_sweep(sweep.sweep_id, folder / "sweeps")
    table = read_results(MlflowClient(ref.tracking_uri), ref)
    assert table.num_rows == 4
    assert list(table.column_names[: len(results.TRIAL_COLUMNS)]) == list(results.TRIAL_COLUMNS)
    names = ["metric.capacity", "disent/mig", "disent/sap", "kl", "kl/0", "kl/1", "kl/2", "kl/3", "recon"]
    assert results.metric_names(table) == names
    assert table.schema.field("disent/mig").type == pa.float64()
    rows = table.to_pylist()
    assert [(r["beta"], r["capacity"], r["seed"]) for r in rows] == [
        (1.0, 0.0, 0),
        (1.0, 0.0, 1),
        (8.0, 0.0, 1),
        (8.0, 5.0, 0),
    ]
    plain, failed, with_checkpoint, annealed = rows
    assert annealed["capacity"] == 5.0 and annealed["metric.capacity"] == 2.5  # C_max, and C(t) as reported
    assert plain["disent/mig"] is None and plain["kl"] == 9.0 and plain["latent_dim"] == 4
    assert failed["status"] == "FAILED" and failed["error"] == "non-finite loss"
    assert with_checkpoint["checkpoint"] == "/nowhere/ckpt" and with_checkpoint["trial_id"] == "t00000"
    assert math.isclose(with_checkpoint["disent/mig"], 0.5)


def test_reading_pages_through_the_runs(sweep, folder, monkeypatch):
    ref = locate_sweep(sweep.sweep_id, folder / "sweeps")
    client = MlflowClient(ref.tracking_uri)
    whole = read_results(client, ref)
    monkeypatch.setattr(results, "PAGE_SIZE", 3)
    assert read_results(client, ref).equals(whole)


def test_a_sweep_is_found_by_its_tag_in_the_tracking_store_alone(sweep, folder):
    ref = locate_sweep(sweep.sweep_id, folder / "elsewhere", tracking_uri=sweep.tracking_uri)
    assert (ref.experiment_id, ref.parent_run_id, ref.folder) == (sweep.experiment_id, sweep.parent_run_id, None)


@pytest.mark.parametrize("tracking", [False, True])
def test_an_unknown_sweep_is_an_environment_problem(sweep, folder, tracking):
    uri = sweep.tracking_uri if tracking else None
    for unknown in ("fake-20990101-000000-0000", "it's"):
        with pytest.raises(EnvironmentProblem, match="no sweep") as caught:
            locate_sweep(unknown, folder / "sweeps", tracking_uri=uri)
        assert caught.value.exit_code == 3


def test_parquet_round_trip(sweep, folder, tmp_path):
    ref = locate_sweep(sweep.sweep_id, folder / "sweeps")
    table = read_results(MlflowClient(ref.tracking_uri), ref)
    path = write_parquet(table, tmp_path / "out" / "results.parquet")
    assert pq.read_table(path).equals(table)
