"""Real sweeps on the embedded local Ray, checked through what they leave in MLflow and on disk."""

import json
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper.record import SWEEP_RECORD
from trainables.settings import DEFAULT_METRICS, metric_outputs

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.sweep


def trial_runs(client: MlflowClient, experiment: str) -> tuple[list, list]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    return parents, children


def test_smoke_sweep_logs_one_parent_and_one_finished_child_per_trial(smoke_sweep):
    folder, _, _ = smoke_sweep
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    parents, children = trial_runs(client, "smoke")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert len(children) == 6
    assert {(r.data.params["beta"], r.data.params["seed"]) for r in children} == {
        (beta, seed) for beta in ("1.0", "8.0") for seed in ("0", "1", "2")
    }
    assert len({r.data.tags["ray_trial_id"] for r in children}) == 6
    for run in children:
        assert run.data.params["objective"] == "beta_vae"
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sweep_id"] == parent.data.tags["sweep_id"]
        assert run.data.params["version.scikit-learn"]
        assert Path(run.data.tags["checkpoint"]).is_dir()


def test_every_child_has_training_curves_and_every_score(smoke_sweep):
    folder, _, _ = smoke_sweep
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    _, children = trial_runs(client, "smoke")
    for run in children:
        for key in ["loss", "recon", "kl"] + [f"kl/{i}" for i in range(10)]:
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == list(range(25, 151, 25)), key
        scores = {k for k in run.data.metrics if k.startswith("disent/")}
        assert scores == {f"disent/{name}" for metric in DEFAULT_METRICS for name in metric_outputs(metric)}
    # A larger beta squeezes the KL: beta = 8 ends below the plain VAE under every seed.
    by_key = {(r.data.params["beta"], r.data.params["seed"]): r.data.metrics for r in children}
    for seed in ("0", "1", "2"):
        assert by_key[("1.0", seed)]["kl"] > by_key[("8.0", seed)]["kl"]


def test_parent_run_holds_the_resolved_config_and_the_sweep_folder_its_state(smoke_sweep):
    folder, _, done = smoke_sweep
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    parents, _ = trial_runs(client, "smoke")
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "config.yaml" in artifacts
    (sweep_dir,) = (folder / "sweeps").iterdir()
    record = json.loads((sweep_dir / SWEEP_RECORD).read_text())
    assert record["parent_run_id"] == parents[0].info.run_id
    assert f"sweep {record['sweep_id']}: 6 trials, 0 failed" in done.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in done.stdout


def test_status_reads_the_finished_sweep_from_its_folder(smoke_sweep, sweeper_cli):
    folder, _, _ = smoke_sweep
    (sweep_dir,) = (folder / "sweeps").iterdir()
    status = sweeper_cli(["status", sweep_dir.name], cwd=folder, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "6 terminated" in status.stdout
    assert status.stdout.count("TERMINATED") == 6


def test_optuna_sweep_repeats_each_configuration_over_the_seeds(tmp_path, sweeper_cli):
    args = [
        "launch", str(REPO / "configs" / "optuna_beta_capacity.yaml"),
        "--set", "search.num_samples=2", "--set", "search.seeds=2", "--set", "search.pack_seeds=false",
        "--set", "training.steps=20", "--set", "training.report_every=10", "--set", "training.batch_size=16",
        "--set", "eval.every=20", "--set", "eval.preset=fast", "--set", "eval.metrics=[mig]",
        "--set", "search.metric=disent/mig", "--set", "resources.cpu=1", "--set", "resources.gpu=0",
    ]
    done = sweeper_cli(args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, children = trial_runs(client, "optuna_beta_capacity")
    assert len(children) == 4
    configs: dict[tuple[str, str], set[str]] = {}
    for run in children:
        assert run.data.params["objective"] == "annealed_vae"
        configs.setdefault((run.data.params["gamma"], run.data.params["c_max"]), set()).add(run.data.params["seed"])
        assert 1.0 <= float(run.data.params["gamma"]) <= 1000.0
        assert "disent/mig" in run.data.metrics
    assert list(configs.values()) == [{"0", "1"}, {"0", "1"}]

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    study = optuna.load_study(study_name=sweep_dir.name, storage=storage)
    assert len(study.trials) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_diverging_trials_fail_with_their_reason_the_sweep_goes_on_and_optuna_records_them_failed(
    tmp_path, sweeper_cli
):
    args = [
        "launch", str(REPO / "configs" / "optuna_beta_capacity.yaml"),
        # Categorical gamma: 1.0 trains; 1e38 * |KL - C| overflows float32 once C(t) passes a few nats.
        "--set", "search.objectives={annealed_vae: {gamma: [1.0, 1.0e38], c_max: [1000.0]}}", "--set", "search.sampler=random",
        "--set", "search.num_samples=4", "--set", "search.seeds=2", "--set", "search.pack_seeds=false",
        # A divergence is deterministic: a retry from the last checkpoint would diverge again.
        "--set", "objective.capacity_steps=100", "--set", "failure.max_failures=0",
        "--set", "training.steps=20", "--set", "training.report_every=10", "--set", "training.batch_size=16",
        "--set", "eval.metrics=[]", "--set", "search.metric=loss", "--set", "search.mode=min",
        "--set", "resources.cpu=1", "--set", "resources.gpu=0",
    ]
    done = sweeper_cli(args, cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]

    # MLflow: each diverged model's run FAILED with the reason, the others FINISHED, the sweep FAILED.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parents, children = trial_runs(client, "optuna_beta_capacity")
    assert len(children) == 8 and parents[0].info.status == "FAILED"
    failed = [r for r in children if r.data.params["gamma"] == "1e+38"]
    assert failed and all(r.info.status == "FAILED" for r in failed)
    assert all("non-finite loss at step 10" in r.data.tags["error"] for r in failed)
    assert all(r.info.status == "FINISHED" for r in children if r.data.params["gamma"] == "1.0")
    assert f"8 trials, {len(failed)} failed" in done.stdout
    assert done.stdout.count("NonFiniteLossError") >= len(failed)  # the progress line names each one's reason

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    trials = optuna.load_study(study_name=sweep_dir.name, storage=storage).trials
    assert len(trials) == 4
    states = {(t.params["annealed_vae.gamma"], t.state) for t in trials}
    assert states == {(1.0, TrialState.COMPLETE), (1.0e38, TrialState.FAIL)}  # both kinds were drawn
    assert all(t.value is None for t in trials if t.state == TrialState.FAIL)
    assert all(math.isfinite(t.value) for t in trials if t.state == TrialState.COMPLETE)
