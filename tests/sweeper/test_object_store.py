"""Checkpoints in an object store: a sweep whose trials checkpoint to S3, read back by status and
export; a bucket the driver cannot write to is refused before anything exists.

The S3 endpoint is a real HTTP server on loopback (the `s3_env` fixture),
reached through the same pyarrow client Ray uses, configured only by the
standard AWS environment variables, as a user's MinIO or S3 would be.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.fs
import pytest
from mlflow.tracking import MlflowClient

from tests.drivers import SAVE_STATE_EVERY_SECOND, kill_when

REPO = Path(__file__).resolve().parents[2]
BUCKET = "sweeps"  # made by the s3_env fixture
STEPS, REPORT = 240, 40  # a checkpoint with every report
TINY = [
    "--set", "search.objectives.beta_vae.beta=[4.0]", "--set", "search.seeds=2", "--set", "search.max_concurrent=1",
    "--set", f"training.steps={STEPS}", "--set", f"training.report_every={REPORT}",
    "--set", f"training.checkpoint_every={REPORT}", "--set", f"eval.every={STEPS}",
    "--set", "eval.metrics=[mig]", "--set", "resources.cpu=1",
]


def sweeper(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=420)


class MakesAFile:
    """Unpickled, it creates a file: what a writer of the bucket would put into Tune's state."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def objects(store: pyarrow.fs.S3FileSystem, prefix: str) -> list[str]:
    found = store.get_file_info(pyarrow.fs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return [info.path for info in found if info.type == pyarrow.fs.FileType.File]


def checkpoint_in_tune_state(sweeps: Path) -> bool:
    """Tune's experiment state in the bucket (read as status reads it, nothing unpickled) holds a trial past
    its first checkpoint: what a resume needs to restore a trial from the bucket."""
    from sweeper.analyse.state import read_trials
    from sweeper.errors import EnvironmentProblem

    folders = list(sweeps.iterdir()) if sweeps.is_dir() else []
    try:
        rows = [row for folder in folders for row in read_trials(f"s3://{BUCKET}/ckpt/{folder.name}")]
    except EnvironmentProblem:
        return False  # caught mid-upload: the next look sees the whole object
    return any(row.last_result.get("step", 0) >= REPORT for row in rows)


@pytest.mark.sweep
def test_a_sweep_checkpoints_to_the_object_store_survives_its_driver_and_is_read_back_from_it(
    s3_env, tmp_path, monkeypatch
):
    env, store = s3_env
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, env[key])  # this process reads Tune's state from the bucket too
    launch = [sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "smoke.yaml"), *TINY,
              "--set", f"checkpoints=s3://{BUCKET}/ckpt/"]
    driver = subprocess.Popen(launch, cwd=tmp_path, env={**env, **SAVE_STATE_EVERY_SECOND}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill the driver once a checkpoint is in the bucket and in Tune's state there.
    kill_when(
        driver,
        lambda: any(p.endswith("/model.safetensors") for p in objects(store, f"{BUCKET}/ckpt"))
        and checkpoint_in_tune_state(tmp_path / "sweeps"),
        360,
        "no checkpoint reached the bucket and Tune's state there",
    )
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    sweep_id = sweep_dir.name
    resumed = sweeper(["resume", sweep_id], tmp_path, env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    # The driver's folder holds the sweep's own files; Tune's state and every checkpoint are in the bucket.
    assert {"sweep.json", "config.yaml"} <= {p.name for p in sweep_dir.iterdir()}
    assert not [p for p in sweep_dir.rglob("*") if p.name in ("model.safetensors", "result.json")]
    stored = objects(store, f"{BUCKET}/ckpt/{sweep_id}")
    weights = {p for p in stored if p.endswith("/model.safetensors")}
    assert any(Path(p).name.startswith("experiment_state") for p in stored)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`sweeper.role` = 'trial'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert any("restored_from_step" in r.data.metrics for r in runs)  # resumed from its checkpoint in S3
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert steps == list(range(REPORT, STEPS + 1, REPORT))  # continuous, no step twice
        tag = run.data.tags["checkpoint"]
        assert tag.startswith(f"s3://{BUCKET}/ckpt/{sweep_id}/")
        assert f"{tag.removeprefix('s3://')}/model.safetensors" in weights

    status = sweeper(["status", sweep_id], tmp_path, env)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "2 terminated" in status.stdout

    out = tmp_path / "exported"
    exported = sweeper(["export", sweep_id, "--to", str(out), "--run", runs[0].info.run_id], tmp_path, env)
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    (model_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert (model_dir / "model.safetensors").is_file()

    # Whoever can write the bucket but not the driver's folder cannot make a resume unpickle what it wrote.
    marker = tmp_path / "pwned"
    with store.open_output_stream(f"{BUCKET}/ckpt/{sweep_id}/tuner.pkl") as state:
        state.write(pickle.dumps(MakesAFile(marker)))
    refused = sweeper(["resume", sweep_id], tmp_path, env)
    assert refused.returncode == 3, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert f"s3://{BUCKET}/ckpt/{sweep_id}/tuner.pkl: changed since the sweep's driver wrote it" in refused.stderr
    assert not marker.exists()


def test_a_bucket_the_driver_cannot_write_to_is_refused_before_anything_exists(s3_env, tmp_path):
    env, _ = s3_env
    smoke = str(REPO / "configs" / "smoke.yaml")
    done = sweeper(["launch", smoke, *TINY, "--set", "checkpoints=s3://no-such-bucket/ckpt"], tmp_path, env)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert "checkpoints 's3://no-such-bucket/ckpt': cannot write there from the driver" in done.stderr
    assert "AWS_ENDPOINT_URL" in done.stderr
    assert not (tmp_path / "sweeps").exists()


def test_a_checkpoint_uri_downloads_into_a_folder_that_goes_away_and_a_missing_one_is_empty(s3_env, monkeypatch):
    from sweeper import object_store

    env, store = s3_env
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, env[key])
    with store.open_output_stream(f"{BUCKET}/unit/checkpoint_000001/model.safetensors") as out:
        out.write(b"weights")
    with object_store.local_folder(f"s3://{BUCKET}/unit/checkpoint_000001") as folder:
        assert (folder / "model.safetensors").read_bytes() == b"weights"
    assert not folder.exists()
    with object_store.local_folder(f"s3://{BUCKET}/unit/checkpoint_000002") as missing:
        assert list(missing.iterdir()) == []
    with object_store.local_folder("/some/local/checkpoint") as local:
        assert local == Path("/some/local/checkpoint")
    assert object_store.uri_of(store, f"{BUCKET}/unit") == f"s3://{BUCKET}/unit"
    assert object_store.uri_of(pyarrow.fs.LocalFileSystem(), "/tmp/x") == "/tmp/x"
