"""`sweeper resume` refuses a sweep folder whose pickled Tune state its driver did not write, before
anything in it is unpickled: one real sweep, launched with a state key, then tampered with copy by copy."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray.train._internal.storage as tune_storage
from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
from ray.tune.experiment import Trial
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.record import SweepRecord
from sweeper.run.pickles import STATE_KEY_ENV, UNKEYED, StateDigests, check_state, covered, digest

REPO = Path(__file__).resolve().parents[3]
KEY = "a-key-only-the-driver-knows"
TINY = [
    "--set", "search.objectives.beta_vae.beta=[4.0]", "--set", "search.seeds=1", "--set", "training.steps=20",
    "--set", "training.report_every=10", "--set", "training.checkpoint_every=20", "--set", "eval.metrics=[]",
    "--set", "search.metric=loss", "--set", "search.mode=min", "--set", "resources.cpu=1",
]  # fmt: skip
runner = CliRunner()


class Payload:
    """Unpickling this creates a file: what an attacker would put into a pickled state file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A finished one-trial sweep launched with $SWEEPER_STATE_KEY set."""
    folder = tmp_path_factory.mktemp("keyed")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "smoke.yaml"), *TINY],
        cwd=folder, env={**env, STATE_KEY_ENV: KEY}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sweep_dir,) = (folder / "sweeps").iterdir()
    return sweep_dir


@pytest.fixture
def copy(sweep, tmp_path, monkeypatch) -> Path:
    """A copy of the sweep folder to tamper with, its record pointing at the copy."""
    target = tmp_path / "sweeps" / sweep.name
    shutil.copytree(sweep, target)
    record = json.loads((target / "sweep.json").read_text())
    (target / "sweep.json").write_text(json.dumps({**record, "storage": str(tmp_path / "sweeps")}))
    monkeypatch.setenv(STATE_KEY_ENV, KEY)
    return target


def resume(sweep_dir: Path):
    return runner.invoke(app, ["resume", str(sweep_dir)])


@pytest.mark.sweep
def test_the_driver_recorded_every_pickled_state_file_as_tune_wrote_it(sweep):
    record = SweepRecord.read(sweep)
    names = sorted(p.relative_to(sweep).as_posix() for p in sweep.rglob("*") if p.is_file())
    pickled = [n for n in names if covered(n)]
    assert "tuner.pkl" in pickled and any(n.startswith("experiment_state-") for n in pickled)
    assert any(n.endswith("/params.pkl") for n in pickled) and "sweep.json" not in pickled
    assert record.state_digest_scheme == "hmac-sha256"
    for name in pickled:
        assert digest(name, iter([(sweep / name).read_bytes()]), KEY.encode()) in record.state_digests[name], name


@pytest.mark.sweep
@pytest.mark.parametrize("name", ["tuner.pkl", "experiment_state", "searcher-state-20990101_000000.pkl", "params.pkl"])
def test_resume_refuses_a_changed_or_added_pickle_before_unpickling_it(copy, tmp_path, name):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(marker))
    if name == "experiment_state":
        (state,) = copy.glob("experiment_state-*.json")
        text = json.loads(state.read_text())
        text["runner_data"]["_tampered"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": payload.hex()}
        state.write_text(json.dumps(text))
        name = state.name
    elif name == "params.pkl":
        (params,) = copy.glob("*/params.pkl")
        params.write_bytes(payload)
        name = params.relative_to(copy).as_posix()
    else:
        (copy / name).write_bytes(payload)
    result = resume(copy)
    assert result.exit_code == 3, result.output
    assert str(copy / name) in result.output and "refusing to resume" in result.output
    assert not marker.exists()


@pytest.mark.sweep
def test_resume_refuses_without_the_key_with_a_wrong_key_and_with_forged_unkeyed_digests(copy, tmp_path, monkeypatch):
    monkeypatch.delenv(STATE_KEY_ENV)
    unset = resume(copy)
    assert unset.exit_code == 3 and f"set {STATE_KEY_ENV} as it was when the sweep was launched" in unset.output

    monkeypatch.setenv(STATE_KEY_ENV, "a guess")
    wrong = resume(copy)
    assert wrong.exit_code == 3 and f"{copy}/" in wrong.output
    assert "changed since the sweep's driver wrote it" in wrong.output

    # Whoever can write the folder can write sweep.json too: plain digests of a payload do not pass with a key.
    marker = tmp_path / "pwned"
    (copy / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    record = json.loads((copy / "sweep.json").read_text())
    names = [n for n in record["state_digests"] if (copy / n).is_file()]
    forged = {n: [digest(n, iter([(copy / n).read_bytes()]), None)] for n in names}
    (copy / "sweep.json").write_text(json.dumps({**record, "state_digests": forged, "state_digest_scheme": UNKEYED}))
    monkeypatch.setenv(STATE_KEY_ENV, KEY)
    downgraded = resume(copy)
    assert downgraded.exit_code == 3 and "recorded without a key" in downgraded.output
    assert not marker.exists()


@pytest.mark.sweep
def test_an_untouched_sweep_resumes(copy):
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", "resume", str(copy)], cwd=copy.parent.parent, capture_output=True,
        text=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# -- refused before anything starts: a fake sweep folder, no Ray ------------------------------------------

TUNER, STATE = "tuner.pkl", "experiment_state-2026-01-01_00-00-00.json"


def recorded_folder(tmp_path: Path, files: dict[str, bytes], recorded: dict[str, bytes] | None) -> Path:
    """A sweep folder holding `files`, its record naming the unkeyed digests of `recorded` (None: no digests)."""
    sweep_dir = tmp_path / "sweeps" / "fake-20260101-000000-abcd"
    sweep_dir.mkdir(parents=True)
    for name, content in files.items():
        (sweep_dir / name).write_bytes(content)
    digests = None if recorded is None else {n: [digest(n, iter([c]), None)] for n, c in recorded.items()}
    record = SweepRecord(
        sweep_dir.name, "fake", f"sqlite:///{tmp_path / 'mlflow.db'}", "1", "parent", str(sweep_dir.parent), 0.0,
        state_digests=digests, state_digest_scheme=None if recorded is None else UNKEYED,
    )  # fmt: skip
    record.write(sweep_dir)
    return sweep_dir


def refused_untouched(sweep_dir: Path, tmp_path: Path, monkeypatch, expected: str) -> None:
    """`sweeper resume` exits 3 with `expected`, and leaves the folder as it was and no tracking store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STATE_KEY_ENV, raising=False)
    before = {p.name: p.read_bytes() for p in sweep_dir.iterdir()}
    result = resume(sweep_dir)
    assert result.exit_code == 3, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in sweep_dir.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweeps"]


def test_resume_refuses_a_sweep_whose_record_holds_no_digests(tmp_path, monkeypatch):
    sweep_dir = recorded_folder(tmp_path, {TUNER: b"state", STATE: b"{}"}, recorded=None)
    expected = f"sweep {sweep_dir.name}: its record holds no digests of Tune's pickled state"
    refused_untouched(sweep_dir, tmp_path, monkeypatch, expected)


@pytest.mark.parametrize("deleted", [TUNER, STATE])
def test_resume_refuses_a_sweep_whose_state_file_was_deleted(deleted, tmp_path, monkeypatch):
    # Without its experiment state Tune would start every trial again, finished ones too.
    files = {TUNER: b"state", STATE: b"{}"}
    sweep_dir = recorded_folder(tmp_path, {n: c for n, c in files.items() if n != deleted}, recorded=files)
    expected = f"{sweep_dir} no longer holds the state its driver wrote ({deleted}); refusing to resume"
    refused_untouched(sweep_dir, tmp_path, monkeypatch, expected)


def test_a_newer_state_recorded_before_its_copy_landed_does_not_block_resume(tmp_path, monkeypatch):
    # A resumed session records its own experiment state just before Tune copies it into the folder.
    newer = "experiment_state-2026-01-02_00-00-00.json"
    files = {TUNER: b"state", STATE: b"{}"}
    sweep_dir = recorded_folder(tmp_path, files, recorded={**files, newer: b"{}"})
    monkeypatch.delenv(STATE_KEY_ENV, raising=False)
    check_state(SweepRecord.read(sweep_dir))  # no error


# -- recorded across a resume: Tune's own sync between the sweep folder and its staging folder, no Ray ----


def test_a_resumed_session_keeps_the_digests_it_records_through_tunes_syncs(tmp_path, monkeypatch):
    # A resumed Tune copies the experiment folder's top-level JSON (sweep.json too, in the sweep folder) into
    # its staging folder, then copies that folder back at every save: a stale record would overwrite this one.
    monkeypatch.delenv(STATE_KEY_ENV, raising=False)
    files = {TUNER: b"state", STATE: b"{}"}
    sweep_dir = recorded_folder(tmp_path, files, recorded=files)  # as the killed session left it
    # Only the running Ray's session folder, where Tune puts its staging folder, is stood in for.
    monkeypatch.setattr(tune_storage, "_get_ray_train_session_dir", lambda: str(tmp_path / "ray-session"))
    storage = tune_storage.StorageContext(str(sweep_dir.parent), sweep_dir.name)
    syncs = _ExperimentCheckpointManager(storage=storage, checkpoint_period=0)
    syncs.sync_down_experiment_state()  # what Tune's resume does before its first step
    staging = Path(storage.experiment_driver_staging_path)
    assert (staging / "sweep.json").is_file()  # Tune's copy, as this Ray makes it

    callback = StateDigests(sweep_dir, str(sweep_dir))
    callback.on_step_begin(0, [Trial("train", stub=True, storage=storage)])
    newer = "experiment_state-2026-01-02_00-00-00.json"

    def save() -> None:  # Tune's save: the state files into the staging folder, then the callbacks' states
        (staging / newer).write_bytes(b'{"newer": true}')
        callback.get_state()

    syncs.sync_up_experiment_state(save, force=True, wait=True)
    record = SweepRecord.read(sweep_dir)
    assert record.state_digests[newer] == [digest(newer, iter([b'{"newer": true}']), None)]
    assert record.state_digests[STATE] == [digest(STATE, iter([b"{}"]), None)]  # the first session's kept
    check_state(record)  # a second resume finds every file recorded
