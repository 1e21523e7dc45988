"""A finished sweep as `sweeper launch` leaves it in MLflow and on disk, made in a second without training.

Tests get the helpers through fixtures (`make_sweep`, `two_by_three`,
`trial_metrics`): a conftest module is not importable by name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs
import pytest
import torch
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from sweeper.record import RESOLVED_CONFIG, SweepRecord
from trainables.checkpoint import save_checkpoint
from trainables.model import BetaVAE
from trainables.settings import TrialSettings

SWEEP_ID = "fake-20260101-000000-abcd"
LATENTS = 4


def checkpoint(folder: Path, weights_seed: int) -> Path:
    """A model checkpoint whose latents all carry information (KL well above UDR's threshold)."""
    torch.manual_seed(weights_seed)
    model = BetaVAE(LATENTS)
    with torch.no_grad():
        model.encoder.mean.weight.mul_(300.0)
    save_checkpoint(folder, model.state_dict(), {"step": 1})
    return folder


def _make_sweep(folder: Path, trials: list[dict], sweep_id: str = SWEEP_ID, data: dict | None = None) -> SweepRecord:
    """Parent run, one child run per trial (params, final metrics, tags), and sweeps/<id>/sweep.json.

    A trial dict holds seed, metrics, and beta (or `params` naming its objective and weights, as
    newer sweeps log them), and optionally capacity, status, error and `weights`: the seed of
    the checkpoint's weights (equal weights give equal codes). `data`: the sweep's data settings.
    Several sweeps may share a folder (and its store).
    """
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    existing = client.get_experiment_by_name("fake")
    experiment = existing.experiment_id if existing else client.create_experiment(
        "fake", artifact_location=str(folder / "mlruns")
    )
    parent = client.create_run(experiment, run_name=sweep_id, tags={"sweep_id": sweep_id, "sweeper.role": "sweep"})
    parent_id = parent.info.run_id
    now = int(time.time() * 1000)
    for index, trial in enumerate(trials):
        tags = {
            "mlflow.parentRunId": parent_id,
            "sweep_id": sweep_id,
            "sweeper.role": "trial",
            "ray_trial_id": f"t{index:05d}",
        }
        if "weights" in trial:
            tags["checkpoint"] = str(checkpoint(folder / "checkpoints" / f"t{index}", trial["weights"]))
        elif "checkpoint" in trial:
            tags["checkpoint"] = trial["checkpoint"]
        if trial.get("error"):
            tags["error"] = trial["error"]
        run = client.create_run(experiment, run_name=f"trial {index}", tags=tags)
        searched = {"beta": trial["beta"], "capacity": trial.get("capacity", 0.0)} if "beta" in trial else {}
        params = {**searched, "seed": trial["seed"], "model.latent_dim": LATENTS, **trial.get("params", {})}
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), now, 10) for k, v in trial["metrics"].items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id, trial.get("status", "FINISHED"))
    # The resolved config as launch logs it: the trial settings, the search, the name.
    settings = TrialSettings.model_validate({"model": {"latent_dim": LATENTS}, "data": data or {}}).model_dump(
        mode="json"
    )
    resolved = yaml.safe_dump({"name": "fake", **settings, "search": {"kind": "grid", "beta": [1.0, 8.0]}})
    client.log_text(parent_id, resolved, RESOLVED_CONFIG)
    client.set_terminated(parent_id, "FINISHED")
    sweep_dir = folder / "sweeps" / sweep_id
    sweep_dir.mkdir(parents=True)
    (sweep_dir / RESOLVED_CONFIG).write_text(resolved)
    record = SweepRecord(sweep_id, "fake", uri, experiment, parent_id, str(folder / "sweeps"), time.time())
    record.write(sweep_dir)
    return record


def metrics(recon: float, mig: float, sap: float, kl: float = 5.0) -> dict[str, float]:
    return {
        "recon": recon,
        "kl": kl,
        "disent/mig": mig,
        "disent/sap": sap,
        **{f"kl/{i}": kl / LATENTS for i in range(LATENTS)},
    }


def _two_by_three(with_weights: bool = True) -> list[dict]:
    """beta 1 and 8 x seeds 0..2; beta 1's seeds share their weights, beta 8's all differ."""
    scores = {1.0: [0.10, 0.30, 0.20], 8.0: [0.70, 0.40, 0.50]}
    trials = []
    for beta, migs in scores.items():
        for seed, mig in enumerate(migs):
            trial = {"beta": beta, "seed": seed, "metrics": metrics(100 * beta + seed, mig, mig / 2)}
            if with_weights:
                trial["weights"] = 0 if beta == 1.0 else seed + 1
            trials.append(trial)
    return trials


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh working folder, as a user's project folder would be."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def make_sweep():
    """make_sweep(folder, trials, sweep_id=SWEEP_ID, data=None) -> SweepRecord of a fake finished sweep in `folder`.

    Creating a tracking store takes seconds; share one per module where the tests only read.
    """
    return _make_sweep


@pytest.fixture(scope="session")
def two_by_three():
    """two_by_three(with_weights=True) -> the trials of beta 1 and 8 x 3 seeds (see _two_by_three)."""
    return _two_by_three


@pytest.fixture(scope="session")
def trial_metrics():
    """trial_metrics(recon, mig, sap, kl=5.0) -> a trial's final metrics."""
    return metrics


@pytest.fixture(scope="session")
def s3_env():
    """A real S3 server on loopback (moto's) with an empty bucket `sweeps`; the environment that
    points a process at it (the standard AWS variables, as for MinIO) and a client of its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, "the S3 server ended before it listened"
            if time.monotonic() >= deadline:
                pytest.fail("the S3 server did not start")
            time.sleep(0.2)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="sweeper", AWS_SECRET_ACCESS_KEY="sweeper",
        AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
    )
    store = pyarrow.fs.S3FileSystem(
        endpoint_override=env["AWS_ENDPOINT_URL"], access_key="sweeper", secret_key="sweeper",
        region="us-east-1", allow_bucket_creation=True,
    )
    store.create_dir("sweeps")
    yield env, store
    server.terminate()
    server.wait(timeout=30)
