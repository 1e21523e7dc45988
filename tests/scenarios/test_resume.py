"""A driver killed with SIGKILL mid-sweep, then `sweeper resume`: nothing lost, nothing twice.

The sweep is an Optuna search, so the resume also has to bring back the searcher's state and the
study's journal without asking Optuna for a configuration twice or losing one.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.drivers import SAVE_STATE_EVERY_SECOND, kill_when, trials_in_state

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sweep

STEPS, REPORT, CHECKPOINT = 360, 20, 40
CONFIGURATIONS = 2
ARGS = [
    "--set", "search.objectives={beta_vae: {beta: {low: 1.0, high: 8.0, log: true}}}",
    "--set", f"search.num_samples={CONFIGURATIONS}", "--set", "search.seeds=1", "--set", "search.pack_seeds=false", "--set", "search.max_concurrent=1",
    "--set", "resources.cpu=1", "--set", "resources.gpu=0",
    "--set", f"training.steps={STEPS}", "--set", "training.batch_size=32", "--set", f"training.report_every={REPORT}",
    "--set", f"training.checkpoint_every={CHECKPOINT}",
    "--set", "eval.metrics=[]", "--set", "search.metric=loss", "--set", "search.mode=min",
]


def finished_and_checkpointed_in_tune_state(sweeps: Path) -> bool:
    """Tune's saved experiment state holds a finished trial and a running one with a checkpoint: what the
    resume must keep, and restore."""
    trials = [trial for folder in (sweeps.iterdir() if sweeps.is_dir() else []) for trial in trials_in_state(folder)]
    return any(status == "TERMINATED" for status, _ in trials) and ("RUNNING", True) in trials


def test_resume_after_sigkill_finishes_every_trial_exactly_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(SAVE_STATE_EVERY_SECOND)
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "optuna_beta_capacity.yaml"), *ARGS],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    db = tmp_path / "mlflow.db"
    # Kill once Tune's saved state has a trial finished and another running past a checkpoint.
    kill_when(
        driver,
        lambda: finished_and_checkpointed_in_tune_state(tmp_path / "sweeps"),
        360,
        "no trial finished and another checkpointed within the time limit",
    )

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    resumed = subprocess.run(
        [sys.executable, "-m", "sweeper", "resume", sweep_dir.name],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("optuna_beta_capacity").experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2  # one run per trial, none opened twice
    assert len({r.data.tags["ray_trial_id"] for r in children}) == 2
    restored = 0
    for run in children:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert steps == list(range(REPORT, STEPS + 1, REPORT))  # continuous, no step twice
        if "restored_from_step" in run.data.metrics:
            restored += 1
            assert run.data.metrics["restored_from_step"] % CHECKPOINT == 0
    assert restored >= 1  # the trial that was running resumed from its checkpoint

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    trials = optuna.load_study(study_name=sweep_dir.name, storage=storage).trials
    assert len(trials) == CONFIGURATIONS  # none asked for twice, none lost
    assert all(t.state == TrialState.COMPLETE for t in trials)
    tried = {float(r.data.params["beta"]) for r in children}
    assert tried == {t.params["beta_vae.beta"] for t in trials}  # the runs trained what Optuna was told about
