"""Every option of the reading commands, end to end on the real smoke sweep, from a folder where the
defaults would not find it; and `validate` on every shipped config.

The answers are worked out from the sweep's runs in MLflow, not from the commands' own output.
"""

import json
import secrets
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.export.registry import load_model_uri
from sweeper.record import SweepRecord

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working folder that is not the sweep's: no ./sweeps, no ./mlflow.db, no tracking variable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def smoke(smoke_sweep) -> tuple[SweepRecord, MlflowClient, list]:
    """The smoke sweep's record, a client of its store, and its model runs."""
    _, sweep_dir, _ = smoke_sweep
    record = SweepRecord.read(sweep_dir)
    client = MlflowClient(record.tracking_uri)
    runs = model_runs(client, record)
    assert len(runs) == 6
    return record, client, runs


def model_runs(client: MlflowClient, record: SweepRecord) -> list:
    query = f"tags.sweep_id = '{record.sweep_id}' and tags.`sweeper.role` = 'trial'"
    return client.search_runs([record.experiment_id], query)


def lowest_recon_seed_per_beta(runs: list) -> dict[float, int]:
    """beta -> the seed of its lowest final reconstruction loss (ties to the lower seed)."""
    best: dict[float, tuple[float, int]] = {}
    for run in runs:
        beta, seed = float(run.data.params["beta"]), int(run.data.params["seed"])
        best[beta] = min(best.get(beta, (float("inf"), -1)), (run.data.metrics["recon"], seed))
    return {beta: seed for beta, (_, seed) in best.items()}


def tags_of(client: MlflowClient, record: SweepRecord) -> dict[str, dict[str, str]]:
    """Run id -> its tags now (the fixture's runs are read before the test selects)."""
    return {r.info.run_id: r.data.tags for r in model_runs(client, record)}


@pytest.mark.sweep
def test_status_and_select_find_the_sweep_through_storage(smoke, elsewhere):
    record, client, runs = smoke
    storage = ["--storage", record.storage]
    assert runner.invoke(app, ["status", record.sweep_id]).exit_code == 3  # not under ./sweeps
    status = runner.invoke(app, ["status", record.sweep_id, *storage])
    assert status.exit_code == 0, status.output
    assert "6 terminated" in status.output and status.output.count("TERMINATED") == 6

    select = runner.invoke(app, ["select", record.sweep_id, *storage, "--no-udr", "--by", "recon", "--mode", "min"])
    assert select.exit_code == 0, select.output
    assert "seed sensitivity by recon" in select.output
    tags = tags_of(client, record)
    best = {
        float(run.data.params["beta"]): int(run.data.params["seed"])
        for run in runs
        if "best_seed" in tags[run.info.run_id].get("role", "").split(",")
    }
    assert best == lowest_recon_seed_per_beta(runs)
    assert client.get_run(record.parent_run_id).data.tags["selected.by"] == "recon (min)"
    assert not (elsewhere / "sweeps").exists() and not (elsewhere / "mlflow.db").exists()


@pytest.mark.sweep
def test_report_through_the_tracking_uri_picks_by_its_mode(smoke, elsewhere):
    record, client, runs = smoke
    out = elsewhere / "report"
    args = ["report", record.sweep_id, "--tracking-uri", record.tracking_uri, "--by", "recon", "--mode", "min"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert len(rows) == 6
    best = {r["beta"]: r["seed"] for r in rows if "best_seed" in (r["role"] or "").split(",")}
    assert best == lowest_recon_seed_per_beta(runs)
    logged = {Path(a.path).name for a in client.list_artifacts(record.parent_run_id, "report")}
    assert "report.html" in logged and "results.parquet" in logged


@pytest.mark.sweep
def test_select_and_export_through_the_tracking_uri_by_a_score_and_mode(smoke, elsewhere):
    record, _, runs = smoke
    tracking = ["--tracking-uri", record.tracking_uri]
    select = runner.invoke(app, ["select", record.sweep_id, *tracking, "--no-udr", "--by", "kl", "--mode", "min"])
    assert select.exit_code == 0, select.output
    assert "seed sensitivity by kl" in select.output

    result = runner.invoke(app, ["export", record.sweep_id, *tracking, "--to", "out", "--by", "recon", "--mode", "min"])
    assert result.exit_code == 0, result.output
    assert "best trial by recon" in result.output
    lowest = min(runs, key=lambda run: (run.data.metrics["recon"], int(run.data.params["seed"])))
    (model,) = json.loads((elsewhere / "out" / "index.json").read_text())["models"]
    assert model["run_id"] == lowest.info.run_id
    metrics = json.loads((elsewhere / "out" / model["folder"] / "metrics.json").read_text())
    assert metrics["final"]["recon"] == pytest.approx(lowest.data.metrics["recon"])


@pytest.mark.sweep
def test_export_picks_all_exports_every_picked_run(smoke, elsewhere):
    record, client, _ = smoke
    storage = ["--storage", record.storage]
    select = runner.invoke(app, ["select", record.sweep_id, *storage, "--no-udr"])
    assert select.exit_code == 0, select.output
    picked = {run_id for run_id, tags in tags_of(client, record).items() if tags.get("selected")}
    assert picked  # the smoke sweep's picks: medians, best and worst seeds

    result = runner.invoke(app, ["export", record.sweep_id, *storage, "--to", "out", "--picks", "all"])
    assert result.exit_code == 0, result.output
    models = json.loads((elsewhere / "out" / "index.json").read_text())["models"]
    assert {m["run_id"] for m in models} == picked and len(models) == len(picked)
    assert all((elsewhere / "out" / m["folder"] / "model.safetensors").is_file() for m in models)


@pytest.mark.sweep
def test_register_without_an_alias_adds_a_version_with_none(smoke, elsewhere):
    record, _, runs = smoke
    run = runs[0].info.run_id
    name = f"smoke-{secrets.token_hex(4)}"  # a new name: the sweep's store outlives one test
    args = ["export", record.sweep_id, "--storage", record.storage, "--to", "out", "--run", run, "--register", name]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"registered: {name} version 1\n" in result.output
    registry = MlflowClient(record.tracking_uri, registry_uri=record.tracking_uri)
    (version,) = registry.search_model_versions(f"name = '{name}'")
    assert version.run_id == run and str(version.version) == "1"
    assert registry.get_registered_model(name).aliases == {}
    loaded = load_model_uri(f"models:/{name}/latest", tracking_uri=record.tracking_uri)
    assert loaded.weights == {"beta": float(runs[0].data.params["beta"])}


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_validates(config, elsewhere):
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{config}: valid; " in result.output
    assert sorted(elsewhere.iterdir()) == []
