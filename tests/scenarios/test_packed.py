"""Packed trials end to end: the seeds of a configuration as one Ray trial, one MLflow run per model.

Real local Ray sweeps: a packed grid that select, report and export read like
any other, and a packed Optuna search whose driver is SIGKILLed mid-pack and
resumed: every model of the pack continues from the pack's checkpoint, and the
study holds each configuration once, with its seeds' mean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.drivers import SAVE_STATE_EVERY_SECOND, kill_when, trials_in_state

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sweep
SEEDS = 3


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}


def sweeper(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )


def model_runs(db: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]


GRID = [
    "--set", "search.pack_seeds=true", f"--set=search.seeds={SEEDS}", "--set", "search.objectives.beta_vae.beta=[1.0,8.0]",
    "--set", "training.steps=60", "--set", "training.batch_size=16", "--set", "training.report_every=20",
    "--set", "training.checkpoint_every=60", "--set", "eval.every=60", "--set", "eval.metrics=[mig,sap]",
]  # fmt: skip


def test_packed_grid_gives_one_run_per_model_and_the_analysis_reads_it(tmp_path):
    launched = sweeper("launch", str(REPO / "configs" / "smoke.yaml"), *GRID, cwd=tmp_path)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "2 trials (6 models)" in launched.stdout

    runs = model_runs(tmp_path / "mlflow.db", "smoke")
    assert len(runs) == 2 * SEEDS
    assert len({r.data.tags["ray_trial_id"] for r in runs}) == 2  # two Ray trials, three models each
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in runs:
        seed, beta = int(run.data.params["seed"]), float(run.data.params["beta"])
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"beta_vae beta={beta:g} seed={seed}"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [20, 40, 60]
        assert {"disent/mig", "disent/sap", "kl/0", "active_latents"} <= set(run.data.metrics)
        assert not any(key.startswith("model/") for key in run.data.metrics)  # a model's own names only
        assert Path(run.data.tags["checkpoint"]).name == f"seed={seed}"
        assert (Path(run.data.tags["checkpoint"]) / "model.safetensors").is_file()
    # Seeds differ: their own initial weights, data and noise.
    for beta in (1.0, 8.0):
        losses = [r.data.metrics["loss"] for r in runs if float(r.data.params["beta"]) == beta]
        assert len(set(losses)) == SEEDS

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    status = sweeper("status", sweep_dir.name, cwd=tmp_path)
    assert status.returncode == 0 and "seeds" not in status.stderr and "0-2" in status.stdout, status.stdout
    selected = sweeper("select", sweep_dir.name, "--by", "disent/mig", cwd=tmp_path)
    assert selected.returncode == 0, selected.stdout[-2000:] + selected.stderr[-2000:]
    exported = sweeper("export", sweep_dir.name, "--to", str(tmp_path / "out"), "--median-seed", cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-2000:]
    (model,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    config = json.loads((model / "config.json").read_text())
    assert config["seed"] in range(SEEDS) and config["training"]["steps_done"] == 60


OPTUNA = [
    "--set", "search.pack_seeds=true", f"--set=search.seeds={SEEDS}", "--set", "search.num_samples=2",
    "--set", "search.objectives={beta_vae: {beta: {low: 1.0, high: 8.0, log: true}}}",
    "--set", "search.max_concurrent=1", "--set", "resources.cpu=1", "--set", "resources.gpu=0",
    "--set", "training.steps=160", "--set", "training.batch_size=16", "--set", "training.report_every=10",
    "--set", "training.checkpoint_every=20", "--set", "eval.metrics=[]",
    "--set", "search.metric=loss", "--set", "search.mode=min",
]  # fmt: skip


def test_packed_optuna_sweep_resumes_every_model_and_tells_optuna_the_seed_mean(tmp_path):
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "optuna_beta_capacity.yaml"), *OPTUNA],
        cwd=tmp_path, env={**env(), **SAVE_STATE_EVERY_SECOND}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip

    def checkpointed() -> bool:
        sweeps = list((tmp_path / "sweeps").glob("*/sweep.json"))
        return bool(sweeps) and ("RUNNING", True) in trials_in_state(sweeps[0].parent)

    kill_when(driver, checkpointed, 500, "no checkpoint reached Tune's experiment state in time")

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    resumed = sweeper("resume", sweep_dir.name, cwd=tmp_path, timeout=800)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    runs = model_runs(tmp_path / "mlflow.db", "optuna_beta_capacity")
    assert len(runs) == 2 * SEEDS  # one run per model, none opened twice
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    restored = {}
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(10, 161, 10))
        if "restored_from_step" in run.data.metrics:
            restored.setdefault(run.data.tags["ray_trial_id"], []).append(run.data.metrics["restored_from_step"])
    # The pack that was running came back whole: all its models, from the same checkpoint step.
    assert any(len(steps) == SEEDS and len(set(steps)) == 1 and steps[0] % 20 == 0 for steps in restored.values())

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    trials = optuna.load_study(study_name=sweep_dir.name, storage=storage).trials
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        seeds = [r for r in runs if float(r.data.params["beta"]) == trial.params["beta_vae.beta"]]
        assert len(seeds) == SEEDS
        assert trial.value == pytest.approx(np.mean([r.data.metrics["loss"] for r in seeds]), rel=1e-6)


# The toy of test_multiobjective's Pareto sweep, as a grid in order: at step 10 the pack of beta 1 has the
# lower loss, so ASHA, one pack at a time, keeps it and stops the pack of beta 64 that reaches the rung next.
ASHA = [
    "--set", "search.kind=grid", "--set", "search.objectives={beta_vae: {beta: [1.0, 64.0]}}", f"--set=search.seeds={SEEDS}",
    "--set", "search.scheduler=asha", "--set", "search.metric=loss", "--set", "search.mode=min",
    "--set", "search.max_concurrent=1", "--set", "resources.cpu=1", "--set", "resources.gpu=0",
    "--set", "training.steps=20", "--set", "training.batch_size=16", "--set", "training.report_every=10",
    "--set", "training.checkpoint_every=20", "--set", "eval.every=10", "--set", "eval.metrics=[]",
]  # fmt: skip


def test_asha_stops_a_pack_at_its_rung_and_mlflow_status_and_the_rung_records_say_so(tmp_path):
    launched = sweeper("launch", str(REPO / "configs" / "optuna_pareto.yaml"), *ASHA, cwd=tmp_path)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    runs = model_runs(tmp_path / "mlflow.db", "optuna_pareto")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    by_beta = {beta: [r for r in runs if float(r.data.params["beta"]) == beta] for beta in (1.0, 64.0)}
    assert [len(by_beta[1.0]), len(by_beta[64.0])] == [SEEDS, SEEDS]
    for run in by_beta[1.0]:
        assert run.info.status == "FINISHED" and "stopped_early_at_step" not in run.data.tags
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [10, 20]
    for run in by_beta[64.0]:  # every model of the pack stopped at the rung, after the report that reached it
        assert run.info.status == "KILLED" and run.data.tags["stopped_early_at_step"] == "10"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [10]
    # ASHA decided on the packs' seed means: the stopped one's is the higher loss.
    means = {beta: np.mean([r.data.metrics["loss"] for r in by_beta[beta]]) for beta in (1.0, 64.0)}
    assert means[64.0] > means[1.0]

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    status = sweeper("status", sweep_dir.name, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert ": 1 stopped, 1 terminated" in status.stdout, status.stdout
    (stopped,) = [line.split() for line in status.stdout.splitlines() if " STOPPED " in line]
    assert stopped[2:6] == ["beta_vae", "beta=64", "0-2", "10"], stopped  # configuration, seeds, step

    # The rung records went with Tune's saved state, digested with it: what a resume gives ASHA back.
    trial_ids = {r.data.tags["ray_trial_id"] for r in runs}
    rungs = json.loads((sweep_dir / "rungs.json").read_text())["rungs"]
    assert rungs[0]["step"] == 10 and set(rungs[0]["recorded"]) == trial_ids
    assert "rungs.json" in json.loads((sweep_dir / "sweep.json").read_text())["state_digests"]
