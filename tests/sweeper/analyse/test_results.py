"""A sweep's trials read from MLflow into one Arrow table, found by folder or by tag."""

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from sweeper.analyse import results
from sweeper.analyse.results import locate_sweep, read_results, row_model, write_parquet
from sweeper.errors import EnvironmentProblem
from sweeper.tags import WEIGHT_PARAMS
from trainables.trial import Configuration

BETA_1, BETA_8 = (Configuration.of("beta_vae", {"beta": b}) for b in (1.0, 8.0))
ANNEALED = Configuration.of("annealed_vae", {"gamma": 1000.0, "c_max": 5.0})
DIP_II = Configuration.of("dip_vae_ii", {"lambda_od": 2.0})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def sweep(folder, make_sweep, trial_metrics):
    trials = [
        {"configuration": BETA_8, "seed": 1, "metrics": trial_metrics(300, 0.5, 0.2), "checkpoint": "/nowhere/ckpt"},
        {"configuration": BETA_1, "seed": 0, "metrics": {"recon": 100.0, "kl": 9.0}},
        {
            "configuration": BETA_1,
            "seed": 1,
            "metrics": {"recon": 120.0},
            "status": "FAILED",
            "error": "non-finite loss",
        },
        {"configuration": DIP_II, "seed": 0, "metrics": {"recon": 90.0, "dip_offdiagonal": 0.25}},
        {"configuration": ANNEALED, "seed": 0, "metrics": {**trial_metrics(310, 0.6, 0.3), "capacity": 2.5}},
    ]
    return make_sweep(folder, trials)


def test_every_trial_becomes_a_row_with_params_metrics_tags_and_nulls(sweep, folder):
    ref = locate_sweep(sweep.sweep_id, folder / "sweeps")
    table = read_results(MlflowClient(ref.tracking_uri), ref)
    assert table.num_rows == 5
    assert list(table.column_names[: len(results.TRIAL_COLUMNS)]) == list(results.TRIAL_COLUMNS)
    names = ["capacity", "dip_offdiagonal", "disent/mig", "disent/sap", "kl", "kl/0", "kl/1", "kl/2", "kl/3", "recon"]
    assert results.metric_names(table) == names
    assert table.schema.field("disent/mig").type == pa.float64()
    rows = table.to_pylist()
    # Sorted by objective, then weights, then seed; a weight the objective has not is null.
    assert [(r["objective"], *(r[w] for w in WEIGHT_PARAMS), r["seed"]) for r in rows] == [
        ("annealed_vae", None, 1000.0, 5.0, None, 0),
        ("beta_vae", 1.0, None, None, None, 0),
        ("beta_vae", 1.0, None, None, None, 1),
        ("beta_vae", 8.0, None, None, None, 1),
        ("dip_vae_ii", None, None, None, 2.0, 0),
    ]
    annealed, plain, failed, with_checkpoint, dip = rows
    assert annealed["capacity"] == 2.5 and annealed["c_max"] == 5.0  # C(t) as reported, and the weight C_max
    assert dip["dip_offdiagonal"] == 0.25 and dip["capacity"] is None
    assert [row_model(r).label() for r in (annealed, dip)] == [
        "annealed_vae gamma=1000 c_max=5 seed=0",
        "dip_vae_ii lambda_od=2 seed=0",
    ]
    assert plain["disent/mig"] is None and plain["kl"] == 9.0 and plain["latent_dim"] == 4
    assert failed["status"] == "FAILED" and failed["error"] == "non-finite loss"
    assert with_checkpoint["checkpoint"] == "/nowhere/ckpt" and with_checkpoint["trial_id"] == "t00000"
    assert math.isclose(with_checkpoint["disent/mig"], 0.5)


def test_runs_of_earlier_releases_read_as_the_configurations_they_trained(tmp_path, make_sweep, trial_metrics):
    """beta and capacity params: C_max 0 is the beta-VAE, else the AnnealedVAE with gamma = beta."""
    annealed = Configuration.of("annealed_vae", {"gamma": 8.0, "c_max": 25.0})
    trials = [{"configuration": c, "seed": 0, "metrics": trial_metrics(1, 0.1, 0.1)} for c in (BETA_8, annealed)]
    record = make_sweep(tmp_path, trials, legacy=True)
    client = MlflowClient(record.tracking_uri)
    params = [r.data.params for r in client.search_runs([record.experiment_id], "tags.`sweeper.role` = 'trial'")]
    # No objective param; both record beta 8, and their capacity tells them apart.
    assert sorted((p.get("objective"), p["beta"], p["capacity"]) for p in params) == [
        (None, "8.0", "0.0"),
        (None, "8.0", "25.0"),
    ]
    ref = locate_sweep(record.sweep_id, tmp_path / "sweeps")
    rows = read_results(client, ref).to_pylist()
    assert [(r["objective"], *(r[w] for w in WEIGHT_PARAMS)) for r in rows] == [
        ("annealed_vae", None, 8.0, 25.0, None),
        ("beta_vae", 8.0, None, None, None),
    ]


def test_a_run_that_names_no_configuration_is_refused_by_name(tmp_path, make_sweep):
    record = make_sweep(tmp_path, [])
    client = MlflowClient(record.tracking_uri)
    tags = {"sweep_id": record.sweep_id, "sweeper.role": "trial", "mlflow.parentRunId": record.parent_run_id}
    run = client.create_run(record.experiment_id, run_name="stray", tags=tags)
    client.log_param(run.info.run_id, "seed", "0")
    ref = locate_sweep(record.sweep_id, tmp_path / "sweeps")
    with pytest.raises(EnvironmentProblem, match=f"run {run.info.run_id} \\(stray\\): no param 'objective'"):
        read_results(client, ref)


def test_the_weight_columns_are_every_objectives_weights_in_each_ones_order():
    from trainables.objectives import WEIGHTS

    assert set(WEIGHT_PARAMS) == {name for names in WEIGHTS.values() for name in names}
    for names in WEIGHTS.values():
        assert sorted(names, key=WEIGHT_PARAMS.index) == list(names)


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
