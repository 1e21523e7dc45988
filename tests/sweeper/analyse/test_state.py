"""`sweeper status` reads Tune's JSON state and never decodes the pickles inside it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.analyse.state import read_trials
from sweeper.errors import EnvironmentProblem
from trainables.settings import TrialSettings
from trainables.trial import TRIAL_INDEX

REPO = Path(__file__).resolve().parents[3]


class _CreatesFile:
    """A pickle that, when loaded, creates the file at `path`: what an attacker would put in the state."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _fallback(path: Path) -> dict:
    return {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(_CreatesFile(path)).hex()}


def _state(folder: Path, payload: Path, status: str = "TERMINATED", error_file: str | None = None) -> Path:
    """An experiment state as Tune writes it, one trial, with a pickle payload in three fields."""
    config = {"beta": 4.0, "capacity": 0.0, TRIAL_INDEX: 1, "settings": TrialSettings().model_dump(mode="json")}
    trial = {
        "trial_id": "abc_00000",
        "status": status,
        "config": config,
        "relative_logdir": "abc_00000_beta=4_C=0_seed=1",
        "storage": _fallback(payload),
        # As Ray stores its non-JSON fields: plain hex of a pickle, loaded by `Trial.from_json_state`.
        "placement_group_factory": pickle.dumps(_CreatesFile(payload)).hex(),
        "trainable_name": "train",
    }
    runtime = {"last_result": {"step": 40, "recon": 12.5, "kl": 3.25, "hidden": _fallback(payload)},
               "error_filename": error_file}
    path = folder / "experiment_state-2026-01-01_00-00-00.json"
    path.write_text(json.dumps({"trial_data": [[json.dumps(trial), json.dumps(runtime)]], "runner_data": {}}))
    return path


def test_payload_would_run_under_tunes_own_reader(tmp_path):
    """The attack is real: Ray's own trial reader (what `ExperimentAnalysis` uses) runs the payload;
    this test is what makes the next ones mean something."""
    from ray.tune.experiment import Trial

    payload = tmp_path / "pwned"
    state = json.loads(_state(tmp_path, payload).read_text())
    try:
        Trial.from_json_state(state["trial_data"][0][0], stub=True)
    except Exception:  # noqa: BLE001 - the payload ran before the rest of the state was refused
        pass
    assert payload.exists()


def test_read_trials_leaves_pickles_undecoded(tmp_path):
    payload = tmp_path / "pwned"
    _state(tmp_path, payload)
    [trial] = read_trials(str(tmp_path))
    assert not payload.exists()
    assert (trial.trial_id, trial.status, trial.spec.seeds, trial.last_result["recon"]) == ("abc_00000", "TERMINATED", (1,), 12.5)


def test_error_file_is_read_only_inside_the_trial_folder(tmp_path):
    logdir = tmp_path / "abc_00000_beta=4_C=0_seed=1"
    logdir.mkdir()
    (logdir / "error.txt").write_text("Traceback ...\nNonFiniteLossError: non-finite loss at step 7\n")
    _state(tmp_path, tmp_path / "pwned", status="ERROR", error_file="error.txt")
    assert read_trials(str(tmp_path))[0].error == "NonFiniteLossError: non-finite loss at step 7"
    _state(tmp_path, tmp_path / "pwned", status="ERROR", error_file="../../etc/passwd")
    assert "not named" in read_trials(str(tmp_path))[0].error


def test_a_state_that_is_not_tunes_is_a_clear_error(tmp_path):
    (tmp_path / "experiment_state-2026.json").write_text('{"trial_data": [["not json", 1]]}')
    with pytest.raises(EnvironmentProblem, match="not a Ray Tune experiment state"):
        read_trials(str(tmp_path))


def test_status_of_a_tampered_sweep_runs_nothing_and_loads_no_ray(tmp_path, make_sweep):
    record = make_sweep(tmp_path, [])
    sweep_dir = Path(record.storage) / record.sweep_id
    payload = tmp_path / "pwned"
    _state(sweep_dir, payload)
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from sweeper.cli import app\n"
        f"result = CliRunner().invoke(app, ['status', {str(sweep_dir)!r}])\n"
        "print(result.output)\n"
        "print('RAY_MODULES', sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
        "sys.exit(result.exit_code)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "abc_00000" in done.stdout and "STOPPED" in done.stdout  # ended at step 40 of its 300,000
    assert "RAY_MODULES []" in done.stdout
    assert not payload.exists()
