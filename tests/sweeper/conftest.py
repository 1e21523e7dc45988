"""A finished sweep as `sweeper launch` leaves it in MLflow and on disk, made in a second without training.

Tests get the helpers through fixtures (`make_sweep`, `tune_state`,
`two_by_three`, `trial_metrics`): a conftest module is not importable by name.
"""

from __future__ import annotations

import json
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
from trainables.trial import CONFIGURATION_KEY, TRIAL_INDEX, Configuration, ModelSpec, model_folder

SWEEP_ID = "fake-20260101-000000-abcd"
LATENTS = 4


def beta_vae(beta: float) -> Configuration:
    return Configuration.of("beta_vae", {"beta": beta})


def checkpoint(folder: Path, init: int, state: dict) -> Path:
    """A model checkpoint whose latents all carry information (KL well above UDR's threshold)."""
    torch.manual_seed(init)
    model = BetaVAE(LATENTS)
    with torch.no_grad():
        model.encoder.mean.weight.mul_(300.0)
    save_checkpoint(folder, model.state_dict(), {"step": 1, **state})
    return folder


def legacy_values(configuration: Configuration) -> tuple[float, float]:
    """(beta, C_max): what a release before the objectives recorded for a configuration it could train."""
    if configuration.objective == "beta_vae":
        return configuration.weight("beta"), 0.0
    assert configuration.objective == "annealed_vae", configuration
    return configuration.weight("gamma"), configuration.weight("c_max")


def _model_run(trial: dict, folder: Path, legacy: bool) -> tuple[dict, dict]:
    """(params, checkpoint tags) of one model's run, as the current release or an earlier one logged it.

    The current release logs the objective and its weights and checkpoints each model in `seed=<s>/` of
    its trial's checkpoint, its state naming objective, weights and seed; earlier releases logged beta
    and C_max, checkpointed a model at the root of its trial's checkpoint, and named beta and C_max in
    its state.
    """
    model = ModelSpec(trial["configuration"], trial["seed"])
    settings = {"model.latent_dim": LATENTS, "objective.capacity_steps": 100, "trial_index": model.seed}
    if legacy:
        beta, capacity = legacy_values(model.configuration)
        params = {"beta": beta, "capacity": capacity, "seed": model.seed, **settings}
        state = {"beta": beta, "capacity_max": capacity, "seed": model.seed}
        where = folder / "checkpoint_000001"
    else:
        weights = dict(model.configuration.weights)
        params = {"objective": model.configuration.objective, **weights, "seed": model.seed, **settings}
        state = {"objective": model.configuration.objective, "weights": weights, "seed": model.seed}
        where = folder / "checkpoint_000001" / model_folder(model.seed)
    tags = {}
    if "init" in trial:
        tags["checkpoint"] = str(checkpoint(where, trial["init"], {**state, **trial.get("state", {})}))
    elif "checkpoint" in trial:
        tags["checkpoint"] = trial["checkpoint"]
    return params, tags


def _make_sweep(
    folder: Path, trials: list[dict], sweep_id: str = SWEEP_ID, legacy: bool = False, data: dict | None = None
) -> SweepRecord:
    """Parent run, one child run per model (params, final metrics, tags), and sweeps/<id>/sweep.json.

    A trial dict holds `configuration` (a trainables.trial.Configuration), seed, metrics, and optionally
    status, error, and either `checkpoint` (the tag's value) or `init`: the seed of the checkpoint's
    weights (equal weights give equal codes), with `state` for what its trainer state says besides.
    `legacy`: runs and checkpoints as releases before the objectives wrote them (see `_model_run`).
    `data`: the sweep's data settings. Several sweeps may share a folder (and its store).
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
        params, checkpoint_tags = _model_run(trial, folder / "checkpoints" / f"t{index}", legacy)
        tags = {
            "mlflow.parentRunId": parent_id,
            "sweep_id": sweep_id,
            "sweeper.role": "trial",
            "ray_trial_id": f"t{index:05d}",
            **checkpoint_tags,
        }
        if trial.get("error"):
            tags["error"] = trial["error"]
        name = ModelSpec(trial["configuration"], trial["seed"]).label()
        run = client.create_run(experiment, run_name=name, tags=tags)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), now, 10) for k, v in trial["metrics"].items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id, trial.get("status", "FINISHED"))
    # The resolved config as launch logs it: the trial settings, the search, the name.
    settings = TrialSettings.model_validate(
        {"model": {"latent_dim": LATENTS}, "objective": {"capacity_steps": 100}, "data": data or {}}
    ).model_dump(mode="json")
    search = {"kind": "grid", "beta": [1.0, 8.0]} if legacy else {"kind": "grid", "objectives": {"beta_vae": {"beta": [1.0, 8.0]}}}
    resolved = yaml.safe_dump({"name": "fake", **settings, "search": search})
    client.log_text(parent_id, resolved, RESOLVED_CONFIG)
    client.set_terminated(parent_id, "FINISHED")
    sweep_dir = folder / "sweeps" / sweep_id
    sweep_dir.mkdir(parents=True)
    (sweep_dir / RESOLVED_CONFIG).write_text(resolved)
    record = SweepRecord(sweep_id, "fake", uri, experiment, parent_id, str(folder / "sweeps"), time.time())
    record.write(sweep_dir)
    return record


def _tune_state(sweep_dir: Path, trials: list[dict]) -> Path:
    """Ray Tune's experiment state of `trials` (as `_make_sweep` takes them, all finished), in the JSON
    Tune writes into the sweep folder: what `sweeper status` reads."""
    settings = TrialSettings.model_validate({"model": {"latent_dim": LATENTS}}).model_dump(mode="json")
    entries = []
    for index, trial in enumerate(trials):
        trial_id = f"t{index:05d}"
        config = {CONFIGURATION_KEY: trial["configuration"].to_config(), TRIAL_INDEX: trial["seed"]}
        state = {"trial_id": trial_id, "status": "TERMINATED", "config": {**config, "settings": settings}}
        # Trained to the end: a trial that ended before `training.steps` shows as stopped early.
        runtime = {"last_result": {**trial["metrics"], "step": settings["training"]["steps"]}, "error_filename": None}
        entries.append([json.dumps({**state, "relative_logdir": trial_id}), json.dumps(runtime)])
    path = sweep_dir / "experiment_state-2026-01-01_00-00-00.json"
    path.write_text(json.dumps({"trial_data": entries, "runner_data": {}}))
    return path


def run_names(client: MlflowClient, record: SweepRecord) -> dict[str, str]:
    """Model label (as `_make_sweep` names the runs) -> run id, of every model run of the sweep."""
    runs = client.search_runs([record.experiment_id], "tags.`sweeper.role` = 'trial'")
    return {run.info.run_name: run.info.run_id for run in runs}


def metrics(recon: float, mig: float, sap: float, kl: float = 5.0) -> dict[str, float]:
    return {
        "recon": recon,
        "kl": kl,
        "disent/mig": mig,
        "disent/sap": sap,
        **{f"kl/{i}": kl / LATENTS for i in range(LATENTS)},
    }


def _two_by_three(with_checkpoints: bool = True) -> list[dict]:
    """beta_vae beta 1 and 8 x seeds 0..2; beta 1's seeds share their weights, beta 8's all differ."""
    scores = {1.0: [0.10, 0.30, 0.20], 8.0: [0.70, 0.40, 0.50]}
    trials = []
    for beta, migs in scores.items():
        for seed, mig in enumerate(migs):
            trial = {"configuration": beta_vae(beta), "seed": seed, "metrics": metrics(100 * beta + seed, mig, mig / 2)}
            if with_checkpoints:
                trial["init"] = 0 if beta == 1.0 else seed + 1
            trials.append(trial)
    return trials


def _earlier_release() -> list[dict]:
    """What a release before the objectives could sweep: beta 1 (C_max 0) and beta 4 with C_max 25, 3 seeds
    each, every seed its own weights; to be made with `legacy=True`. Read now as beta_vae beta=1 and
    annealed_vae gamma=4 c_max=25; by MIG the annealed seed 2 is the best."""
    annealed = Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 25.0})
    scores = {beta_vae(1.0): [0.10, 0.30, 0.20], annealed: [0.40, 0.50, 0.60]}
    return [
        {"configuration": c, "seed": seed, "metrics": metrics(100 + 10 * seed, mig, mig / 2), "init": 10 * i + seed}
        for i, (c, migs) in enumerate(scores.items())
        for seed, mig in enumerate(migs)
    ]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh working folder, as a user's project folder would be."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def make_sweep():
    """make_sweep(folder, trials, sweep_id=SWEEP_ID, legacy=False, data=None) -> SweepRecord of a fake finished sweep
    in `folder` (see _make_sweep).

    Creating a tracking store takes seconds; share one per module where the tests only read.
    """
    return _make_sweep


@pytest.fixture(scope="session")
def tune_state():
    """tune_state(sweep_dir, trials) -> Tune's experiment state file of finished `trials` (see _tune_state)."""
    return _tune_state


@pytest.fixture(scope="session")
def two_by_three():
    """two_by_three(with_checkpoints=True) -> the trials of beta_vae beta 1 and 8 x 3 seeds (see _two_by_three)."""
    return _two_by_three


@pytest.fixture(scope="session")
def earlier_release():
    """earlier_release() -> the trials of a sweep of an earlier release (see _earlier_release)."""
    return _earlier_release


@pytest.fixture(scope="session")
def runs_by_name():
    """runs_by_name(client, record) -> {model label: run id} of a fake sweep's model runs."""
    return run_names


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
