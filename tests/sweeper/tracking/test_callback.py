"""The driver's callback on a real SQLite store, fed real Ray Tune `Trial` objects as Tune's loop feeds them:
a report waits in the buffer (and its pending file) for the next ones, each run's waiting reports are one
request, and every report arrives."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray.tune.experiment import Trial

from sweeper.config import load_config
from sweeper.tags import TRIAL_TAG
from sweeper.tracking.buffer import PENDING_FILE
from sweeper.tracking.callback import MLflowTrialCallback
from sweeper.tracking.client import SweepTracking, connect
from trainables.report import TrialReport
from trainables.trial import CONFIGURATION_KEY, PACK_SEEDS, Configuration

REPO = Path(__file__).resolve().parents[3]
SEEDS = (0, 1)


@pytest.fixture
def driver(tmp_path):
    config = load_config(REPO / "configs" / "smoke.yaml", ["search.seeds=2", "search.pack_seeds=true"])
    tracking = SweepTracking.start(connect(f"sqlite:///{tmp_path / 'mlflow.db'}"), config, "s")
    folder = tmp_path / "sweep"
    folder.mkdir()
    lines: list[str] = []
    shape = {
        CONFIGURATION_KEY: Configuration.of("beta_vae", {"beta": 4.0}).to_config(),
        PACK_SEEDS: list(SEEDS),
        "settings": config.trial_settings().model_dump(mode="json"),
    }
    trials = [Trial("train", config=shape, trial_id=f"t{i}", stub=True) for i in range(3)]
    return MLflowTrialCallback(tracking, folder, lines.append), trials, folder, lines


def result(step: int, node: str = "node-a") -> dict:
    models = {seed: {"loss": 100.0 / step + seed, "recon": 90.0, "kl": 10.0, "kl/0": 10.0} for seed in SEEDS}
    return {**TrialReport(models, {}, images_per_sec=640.0).tune_metrics(), "step": step, "hostname": node}


def test_reports_wait_for_the_hold_then_go_as_one_request_per_model(driver, monkeypatch):
    callback, trials, folder, lines = driver
    client = callback.tracking.client
    requests: list[int] = []  # metric values of each request, the real one made after it is counted
    real = client.log_batch

    def counted(run_id, metrics=(), params=(), tags=()):  # noqa: ANN001, ANN202 - MLflow's own signature
        requests.append(len(metrics))
        return real(run_id, metrics=metrics, params=params, tags=tags)

    monkeypatch.setattr(client, "log_batch", counted)
    monkeypatch.setattr(callback.buffer, "hold_s", 3600.0)  # nothing is due until forced
    callback.setup()
    for trial in trials:
        callback.on_trial_start(0, trials, trial)
    for step in range(1, 6):
        for trial in trials:
            callback.on_trial_result(step, trials, trial, result(step))
    # Nothing written yet: the runs' writes wait, all of them on disk.
    kept = [json.loads(line) for line in (folder / PENDING_FILE).read_text().splitlines()]
    assert sum(op["op"] == "metrics" for op in kept) == 5 * len(trials) * len(SEEDS)
    assert callback.buffer.pending == len(kept)

    requests.clear()
    callback.on_experiment_end(trials)  # forced, as at the end of the sweep
    assert callback.buffer.pending == 0 and not (folder / PENDING_FILE).exists()
    # Per model: its params, then its five reports (loss, recon, kl, kl/0, step, images_per_sec) in one request.
    assert sorted(n for n in requests if n) == [5 * 6] * len(trials) * len(SEEDS)

    runs = client.search_runs([callback.tracking.experiment_id], "tags.sweeper.role = 'trial'")
    assert len(runs) == len(trials) * len(SEEDS)
    for run in runs:
        seed = int(run.data.tags["seed"])
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(s, 100.0 / s + seed) for s in range(1, 6)]
        assert run.data.tags["hostname"] == "node-a"
    assert lines == []


def test_the_placement_is_sent_once_and_again_when_the_trial_moves(driver):
    callback, trials, folder, _ = driver
    trial = trials[0]
    callback.setup()
    callback.on_trial_start(0, trials, trial)
    for step, node in ((1, "node-a"), (2, "node-a"), (3, "node-b")):
        callback.on_trial_result(step, trials, trial, result(step, node))
    queued = [op for op in callback.buffer.ops() if op["op"] == "metrics" and op["run"].endswith(":0")]
    assert [op["tags"] for op in queued] == [{"hostname": "node-a"}, {}, {"hostname": "node-b"}]
    callback.on_experiment_end(trials)
    client: MlflowClient = callback.tracking.client
    (run,) = client.search_runs(
        [callback.tracking.experiment_id], f"tags.{TRIAL_TAG} = '{trial.trial_id}' and tags.seed = '0'"
    )
    assert run.data.tags["hostname"] == "node-b"


def test_a_report_is_written_once_the_hold_has_passed(driver, monkeypatch):
    callback, trials, _, _ = driver
    monkeypatch.setattr(callback.buffer, "hold_s", 0.2)
    callback.setup()
    callback.on_trial_start(0, trials, trials[0])
    callback.on_trial_result(1, trials, trials[0], result(1))
    assert callback.buffer.pending  # held
    time.sleep(0.3)
    callback.on_step_end(1, trials)  # Tune's loop between events
    assert callback.buffer.pending == 0
    client = callback.tracking.client
    runs = client.search_runs([callback.tracking.experiment_id], "tags.sweeper.role = 'trial'")
    assert len(runs) == len(SEEDS) and all(run.data.metrics["step"] == 1 for run in runs)

