"""Real multi-node Ray clusters on this machine: a head with no trial resources and workers started
with `ray start`; sweeps join them through --address.

Every node here shares one filesystem, except a worker started in a mount namespace of its own, whose
view of the storage folder is an empty tmpfs: a node on another host, as far as files go.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper.tracking.client import connect

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.sweep
QUICK_TRIALS = ["--set", "eval.metrics=[]", "--set", "search.metric=loss", "--set", "search.mode=min"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@contextmanager
def ray_cluster(
    *workers: tuple[list[str], list[str]], extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """A head with no CPUs or GPUs, plus one worker per (command prefix, `ray start` flags) pair;
    every node and the returned driver environment get `extra_env`.

    Torn down by killing every process that names this cluster's folder.
    """
    # A short folder: Ray's socket paths must stay under the 107-character limit.
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    port = free_port()
    env = {**os.environ, **(extra_env or {}), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    head = [ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0",
            "--include-dashboard=false", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1"]
    subprocess.run(head, env=env, check=True, capture_output=True, timeout=120)
    try:
        for prefix, flags in workers:
            worker = [*prefix, ray_cli(), "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                      *flags]
            subprocess.run(worker, env=env, check=True, capture_output=True, timeout=120)
        wait_for_nodes(f"127.0.0.1:{port}", 1 + len(workers), env)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        deadline = time.monotonic() + 60
        while subprocess.run(["pgrep", "-f", temp_dir], capture_output=True).returncode == 0:
            if time.monotonic() >= deadline:
                pytest.fail("the cluster's processes outlived SIGKILL")
            time.sleep(0.5)
        shutil.rmtree(temp_dir, ignore_errors=True)


# Asked from a process of its own: the test process itself never joins a cluster as a driver.
ALIVE_NODES = "import ray, sys; ray.init(address=sys.argv[1]); print(sum(n['Alive'] for n in ray.nodes()))"


def wait_for_nodes(address: str, count: int, env: dict[str, str]) -> None:
    """Until the cluster's control store lists `count` live nodes: a worker `ray start` returned for has
    not always registered yet."""
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run([sys.executable, "-c", ALIVE_NODES, address], env=env, capture_output=True, text=True,
                              timeout=120)
        alive = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
        if alive == [str(count)]:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"the cluster has {alive or done.stderr[-500:]} live nodes, not {count}")
        time.sleep(0.5)


def smoke_args(address: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "smoke.yaml"), "--address", address,
            *QUICK_TRIALS, *overrides]


def trial_runs(folder: Path) -> list:
    # Through the project's opener: it holds the store's schema lock, so a poll while the driver creates
    # MLflow's schema waits for it instead of migrating the same file at once.
    client = connect(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'")


def test_sweep_on_a_cluster_packs_two_trials_per_gpu_on_both_workers(tmp_path):
    gpu_worker = ([], ["--num-cpus=2", "--num-gpus=1"])
    with ray_cluster(gpu_worker, gpu_worker) as (address, env):
        args = smoke_args(address, "--set", "resources.gpu=0.5", "--set", "resources.cpu=1",
                          "--set", "search.seeds=2", "--set", "training.steps=50", "--set", "training.report_every=25")
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"4 trials on {address}" in done.stdout

    runs = trial_runs(tmp_path)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    placements = [(r.data.tags["ray_node_id"], r.data.tags["gpu_ids"]) for r in runs]
    assert len({node for node, _ in placements}) == 2  # trials ran on both workers, none on the head
    assert all(gpu == "0" for _, gpu in placements)  # each trial got a GPU id
    # Four trials of half a GPU on two one-GPU workers: two trials share each worker's GPU.
    assert sorted(placements.count(p) for p in set(placements)) == [2, 2]


def kill_node(node_id: str) -> None:
    """SIGKILL a node's raylet and every process it started, as when a machine vanishes."""
    found = subprocess.run(["pgrep", "-f", f"raylet .*--node_id={node_id}"], capture_output=True, text=True)
    raylets = [int(pid) for pid in found.stdout.split()]
    assert raylets, f"no raylet found for node {node_id}"
    for pid in raylets:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        os.kill(pid, signal.SIGKILL)
        for child in children:
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass


def checkpointed_and_far_from_done(folder: Path, steps: int, report: int):
    """A running trial's run that a checkpoint was reported for and whose training is still far from its end
    (its last logged step before `steps - report`), read from the sweep's MLflow store; None if there is none."""
    if not (folder / "mlflow.db").exists():
        return None  # the driver has not made its store yet
    client = connect(f"sqlite:///{folder / 'mlflow.db'}")
    for run in trial_runs(folder):
        if run.info.status == "RUNNING" and "checkpoint" in run.data.tags:
            logged = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
            if logged and max(logged) < steps - report:
                return run
    return None


def test_a_lost_worker_node_costs_its_trial_a_restart_from_the_last_checkpoint(tmp_path):
    # One CPU per worker: one trial on each, and the lost node's trial restarts on the survivor.
    worker = ([], ["--num-cpus=1", "--num-gpus=0"])
    steps, report, checkpoint = 300, 25, 100
    with ray_cluster(worker, worker) as (address, env):
        args = smoke_args(address, "--set", "resources.cpu=1", "--set", "resources.gpu=0",
                          "--set", "search.objectives.beta_vae.beta=[4.0]", "--set", "search.seeds=2", "--set", f"training.steps={steps}",
                          "--set", f"training.report_every={report}", "--set", f"training.checkpoint_every={checkpoint}",
                          "--set", "failure.max_failures=2")
        log = tmp_path / "driver.out"
        with log.open("w") as out:
            sweep = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            # Past its first checkpoint, and still far from done: kill the node it runs on.
            victim = None
            while victim is None:
                if sweep.poll() is not None:
                    pytest.fail("no trial was caught past its first checkpoint; the sweep ended:\n" + log.read_text()[-3000:])
                victim = checkpointed_and_far_from_done(tmp_path, steps, report)
                time.sleep(0.25)
            kill_node(victim.data.tags["ray_node_id"])
            sweep.wait(timeout=420)
        finally:
            if sweep.poll() is None:
                sweep.kill()
    out = log.read_text()
    assert sweep.returncode == 0, out[-4000:]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {r.info.run_id: r for r in trial_runs(tmp_path)}
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs.values())
    resumed = runs[victim.info.run_id]
    assert resumed.data.metrics["restored_from_step"] >= checkpoint  # it came back from a checkpoint...
    assert resumed.data.tags["ray_node_id"] != victim.data.tags["ray_node_id"]  # ...on the surviving node
    for run_id in runs:
        history = sorted(m.step for m in client.get_metric_history(run_id, "loss"))
        assert history == list(range(report, steps + 1, report))  # continuous, no step twice


def test_a_storage_folder_that_a_node_cannot_see_is_refused_before_anything_starts(tmp_path):
    storage = tmp_path / "sweeps"
    storage.mkdir()
    # This worker sees an empty tmpfs where the driver's storage folder is.
    isolated = (["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f"mount -t tmpfs tmpfs {storage} && exec \"$0\" \"$@\""], ["--num-cpus=1", "--num-gpus=0"])
    with ray_cluster(isolated) as (address, env):
        done = subprocess.run(smoke_args(address, "--set", f"storage={storage}"), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    expected = f"storage '{storage}' is not shared: these cannot see files the driver writes there: 1 of 2 Ray nodes"
    assert expected in done.stderr
    assert list(storage.iterdir()) == []  # no sweep folder, no probe file left behind
    assert trial_runs(tmp_path) == []  # and no MLflow run


def test_checkpoints_in_an_object_store_that_a_node_cannot_reach_are_refused_before_anything_starts(
    tmp_path, s3_env
):
    s3, _ = s3_env
    aws = {k: v for k, v in s3.items() if k.startswith("AWS_")}
    # This worker's environment points at an S3 endpoint where nothing listens.
    astray = (["env", f"AWS_ENDPOINT_URL=http://127.0.0.1:{free_port()}"], ["--num-cpus=1", "--num-gpus=0"])
    with ray_cluster(astray, extra_env=aws) as (address, env):
        done = subprocess.run(smoke_args(address, "--set", "checkpoints=s3://sweeps/refused"), cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    expected = "checkpoints 's3://sweeps/refused': these cannot read what the driver wrote there: 1 of 2 Ray nodes"
    assert expected in done.stderr
    assert not (tmp_path / "sweeps").exists() and trial_runs(tmp_path) == []
