"""A real multi-node Ray cluster on this machine: a head with no trial resources and two workers
started with `ray start`, each declaring one logical GPU; a sweep joins it through --address."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sweep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> str:
    return str(Path(os.sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster():
    """Head plus two workers; torn down by killing every process that names this cluster's folder."""
    # A short folder: Ray's socket paths must stay under the 107-character limit.
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head = [ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0",
            "--include-dashboard=false", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1"]
    subprocess.run(head, env=env, check=True, capture_output=True, timeout=120)
    try:
        for _ in range(2):
            worker = [ray_cli(), "start", f"--address=127.0.0.1:{port}", "--num-cpus=2", "--num-gpus=1",
                      "--node-ip-address=127.0.0.1"]
            subprocess.run(worker, env=env, check=True, capture_output=True, timeout=120)
            time.sleep(3)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        time.sleep(2)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_a_cluster_packs_two_trials_per_gpu_on_both_workers(cluster, tmp_path):
    address, env = cluster
    env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    args = [
        os.sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "smoke.yaml"),
        "--address", address,
        "--set", "resources.gpu=0.5", "--set", "resources.cpu=1", "--set", "search.seeds=2",
        "--set", "training.steps=50", "--set", "training.report_every=25",
        "--set", "eval.metrics=[]", "--set", "search.metric=loss", "--set", "search.mode=min",
    ]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"4 trials on {address}" in done.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    placements = [(r.data.tags["ray_node_id"], r.data.tags["gpu_ids"]) for r in runs]
    assert len({node for node, _ in placements}) == 2  # trials ran on both workers, none on the head
    assert all(gpu == "0" for _, gpu in placements)  # each trial got a GPU id
    # Four trials of half a GPU on two one-GPU workers: two trials share each worker's GPU.
    assert sorted(placements.count(p) for p in set(placements)) == [2, 2]
