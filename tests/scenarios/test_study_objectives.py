"""The study's six objectives through the whole pipeline, at toy size: configs/study.yaml shrunk to two
values per objective and two seeds, launched packed on a real local Ray into a real MLflow store, then
`select`, `report`, `export` and, with a second sweep on noisy dSprites, `sweeper study`."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from trainables.exported import load_exported

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sweep

TWO_EACH = (
    "search.objectives={beta_vae: {beta: [1.0, 8.0]}, annealed_vae: {gamma: [1000.0], c_max: [5.0, 25.0]}, "
    "factor_vae: {gamma: [10.0, 40.0]}, dip_vae_i: {lambda_od: [1.0, 10.0]}, dip_vae_ii: {lambda_od: [1.0, 10.0]}, "
    "beta_tcvae: {beta: [1.0, 6.0]}}"
)
TOY = [
    "--set", "search.seeds=2", "--set", "training.steps=20", "--set", "training.batch_size=16",
    "--set", "training.report_every=10", "--set", "training.checkpoint_every=20", "--set", "objective.capacity_steps=20",
    "--set", "eval.every=20", "--set", "eval.preset=fast", "--set", "eval.metrics=[mig, sap]",
    "--set", "eval.overrides={mig: {num_train: 500}, sap: {num_train: 500, num_test: 250}}",
    "--set", "resources.cpu=1", "--set", "resources.gpu=0", "--set", "training.device=cpu",
]  # fmt: skip
OWN_TERMS = {
    "beta_vae": set(),
    "annealed_vae": {"capacity"},
    "factor_vae": {"tc", "discriminator_loss"},
    "dip_vae_i": {"dip_offdiagonal", "dip_diagonal"},
    "dip_vae_ii": {"dip_offdiagonal", "dip_diagonal"},
    "beta_tcvae": {"tc"},
}
WEIGHTS = {"beta_vae": {"beta"}, "annealed_vae": {"gamma", "c_max"}, "factor_vae": {"gamma"},
           "dip_vae_i": {"lambda_od"}, "dip_vae_ii": {"lambda_od"}, "beta_tcvae": {"beta"}}  # fmt: skip


@pytest.fixture(scope="module")
def studied(tmp_path_factory, sweeper_cli):
    """Two sweeps in one folder and store: the six objectives on dSprites, two of them on noisy dSprites."""
    folder = tmp_path_factory.mktemp("study")
    config = str(REPO / "configs" / "study.yaml")
    done = sweeper_cli(["launch", config, "--set", TWO_EACH, *TOY], cwd=folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    noisy = ["--set", "search.objectives={beta_vae: {beta: [8.0]}, factor_vae: {gamma: [10.0]}}"]
    done = sweeper_cli(["launch", config, *noisy, *TOY, "--set", "data.variant=noisy"], cwd=folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, second = sorted((folder / "sweeps").iterdir(), key=lambda p: p.stat().st_ctime)
    return folder, first.name, second.name


def model_runs(folder: Path, sweep_id: str) -> list:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("study").experiment_id
    runs = client.search_runs([experiment], f"tags.sweep_id = '{sweep_id}' and tags.`sweeper.role` = 'trial'")
    return runs


def test_every_objective_trains_packed_and_logs_its_weights_and_its_own_terms(studied):
    folder, sweep_id, _ = studied
    runs = model_runs(folder, sweep_id)
    assert len(runs) == 12 * 2
    assert len({r.data.tags["ray_trial_id"] for r in runs}) == 12  # each configuration's seeds are one trial
    for run in runs:
        objective = run.data.params["objective"]
        assert run.info.status == "FINISHED", run.info.run_name
        assert WEIGHTS[objective] <= set(run.data.params), objective
        assert not (set().union(*WEIGHTS.values()) - WEIGHTS[objective]) & set(run.data.params), objective
        assert OWN_TERMS[objective] <= set(run.data.metrics), objective
        assert {"loss", "recon", "kl", "active_latents", "disent/mig", "disent/sap"} <= set(run.data.metrics)
    assert {r.data.params["objective"] for r in runs} == set(WEIGHTS)


def test_select_report_and_export_group_by_objective(studied, sweeper_cli, tmp_path):
    folder, sweep_id, _ = studied
    selected = sweeper_cli(["select", sweep_id, "--by", "disent/mig", "--no-udr"], cwd=folder)
    assert selected.returncode == 0, selected.stdout[-3000:] + selected.stderr[-3000:]
    for objective in WEIGHTS:
        assert objective in selected.stdout, objective
    out = tmp_path / "report"
    reported = sweeper_cli(["report", sweep_id, "--by", "disent/mig", "--out", str(out)], cwd=folder)
    assert reported.returncode == 0, reported.stdout[-3000:] + reported.stderr[-3000:]
    page = (out / "report.html").read_text()
    assert all(objective in page for objective in WEIGHTS)
    exported = sweeper_cli(["export", sweep_id, "--to", str(tmp_path / "models"), "--by", "disent/mig"], cwd=folder)
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    (model_dir,) = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
    model = load_exported(model_dir)
    assert model.objective in WEIGHTS and set(model.weights) == WEIGHTS[model.objective]
    assert model_dir.name.startswith(model.objective)


def test_a_study_across_the_two_sweeps_writes_its_table_page_and_run(studied, sweeper_cli, tmp_path):
    folder, first, second = studied
    out = tmp_path / "study"
    done = sweeper_cli(["study", first, second, "--out", str(out), "--no-udr"], cwd=folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pq.read_table(out / "study.parquet").to_pylist()
    assert len(table) == 24 + 4
    assert {(r["dataset"], r["objective"]) for r in table if r["sweep"] == second} == {
        ("dsprites-noisy", "beta_vae"), ("dsprites-noisy", "factor_vae")
    }
    assert {r["objective"] for r in table if r["sweep"] == first} == set(WEIGHTS)
    assert (out / "study.html").is_file()
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    studies = client.get_experiment_by_name("sweeper-studies")
    assert studies is not None and len(client.search_runs([studies.experiment_id])) == 1
