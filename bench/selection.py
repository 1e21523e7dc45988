"""Benchmark of selecting over a large sweep: 1,000 trial runs read from MLflow, picked and tagged.

The runs are synthetic but shaped like a real sweep's: 200 configurations x 5
seeds, each child run with the params, tags and metric keys a trial logs
(a short training history, the final KL per latent and every disentanglement
score), in a temporary SQLite store, written with one `log_batch` per run.
Timed, median of 3 each:
- reading: the paged `search_runs` into the Arrow table (`sweeper.analyse.results`);
- selecting: the picks, the seed statistics of every metric, the eta squared
  and rank correlations of every score (`sweeper.analyse.selection`);
- tagging: writing the picks as tags on a sweep that has none yet (each run
  untagged again, untimed, between repetitions).
UDR and the figures are not timed: they read checkpoints, not MLflow.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from bench.machine import matmul_gflops
from sweeper.analyse.results import SweepRef, metric_names, read_results
from sweeper.analyse.selection import (
    Picks,
    finished,
    rank_correlations,
    score_names,
    seed_statistics,
    select,
    variance_shares,
)
from sweeper.analyse.tagging import write_tags
from trainables.report import TRAINING_METRICS
from trainables.settings import DEFAULT_METRICS, METRIC_OUTPUTS

SWEEP_ID = "bench-20260101-000000-0000"
SEEDS = 5
LATENTS = 10
HISTORY = 5  # reports per run before the final one
REPEATS = 3
SCORES = tuple(f"disent/{name}" for metric in DEFAULT_METRICS for name in METRIC_OUTPUTS[metric])
TRAINING = (*TRAINING_METRICS, "images_per_sec", "step")


def trial_params(beta: float, seed: int) -> dict[str, str]:
    """What a model's run records: its configuration, seed and about fifty settings, as strings."""
    params = {"objective": "beta_vae", "beta": str(beta), "seed": str(seed), "trial_index": str(seed)}
    params.update({f"setting.{i}": str(i) for i in range(40)})
    params.update({"model.latent_dim": str(LATENTS), "data.name": "dsprites"})
    return params


def trial_metrics(rng: np.random.Generator, beta: float, now: int) -> list[Metric]:
    """A short history of the training metrics, then the final report with every score."""
    out = []
    for step in range(1, HISTORY + 1):
        values = {"loss": 900 / step + beta, "recon": 900 / step, "kl": 30 / beta, "step": step}
        out += [Metric(key, float(values.get(key, rng.random())), now, step * 100) for key in TRAINING]
    last = (HISTORY + 1) * 100
    out += [Metric(f"kl/{i}", float(rng.exponential(3 / beta)), now, last) for i in range(LATENTS)]
    out += [Metric(score, float(rng.beta(2, 5) + 0.02 * np.log(beta)), now, last) for score in SCORES]
    return out


def make_sweep(uri: str, configurations: int) -> SweepRef:
    """A finished synthetic sweep: parent run and configurations x SEEDS child runs."""
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench")
    parent = client.create_run(experiment, tags={"sweep_id": SWEEP_ID, "sweeper.role": "sweep"}).info.run_id
    rng = np.random.default_rng(0)
    now = int(time.time() * 1000)
    for index in range(configurations):
        beta = float(1 + index)
        for seed in range(SEEDS):
            tags = {
                "mlflow.parentRunId": parent,
                "sweep_id": SWEEP_ID,
                "sweeper.role": "trial",
                "ray_trial_id": f"t{index:04d}_{seed}",
                "checkpoint": f"/sweeps/{SWEEP_ID}/t{index:04d}_{seed}/checkpoint_000001",
            }
            run = client.create_run(experiment, run_name=f"beta_vae beta={beta:g} seed={seed}", tags=tags).info.run_id
            client.log_batch(
                run,
                metrics=trial_metrics(rng, beta, now),
                params=[Param(k, v) for k, v in trial_params(beta, seed).items()],
                tags=[RunTag("node_ip", "127.0.0.1")],
            )
            client.set_terminated(run, "FINISHED")
    return SweepRef(SWEEP_ID, uri, experiment, parent, None)


def analyse(table) -> Picks:
    """What `sweeper select` and the report compute from the table, UDR and figures aside."""
    done = finished(table)
    picks = select(done, "disent/mig")
    seed_statistics(done, metric_names(done))
    scores = score_names(done)
    variance_shares(done, scores)
    rank_correlations(done, scores)
    return picks


def _median_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool = False) -> str:
    configurations = 40 if quick else 200
    gflops = matmul_gflops()
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        start = time.perf_counter()
        ref = make_sweep(uri, configurations)
        create_seconds = time.perf_counter() - start
        client = MlflowClient(uri)

        table = read_results(client, ref)
        read_seconds = _median_of(lambda: read_results(client, ref))
        picks = analyse(table)
        select_seconds = _median_of(lambda: analyse(table))
        tag_times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            write_tags(client, ref, table, picks)
            tag_times.append(time.perf_counter() - start)
            write_tags(client, ref, read_results(client, ref), Picks(picks.by, True, ()))  # untag
        tag_seconds = statistics.median(tag_times)
        tagged = len(picks.runs())

    runs = configurations * SEEDS
    lines = [
        f"## Selection over {runs:,} runs",
        "",
        f"{runs:,} synthetic finished trial runs ({configurations} configurations x {SEEDS} seeds, each with "
        f"{len(trial_params(1.0, 0))} params, {len(TRAINING)} training metrics over {HISTORY} reports, "
        f"{LATENTS} KL-per-latent metrics and {len(SCORES)} scores) in a local SQLite MLflow store; "
        f"writing them took {create_seconds:.0f} s. float32 matmul in the same process: {gflops:.0f} GFLOP/s."
        + (" Quick run: not representative." if quick else ""),
        "",
        "| step | seconds (median of 3) |",
        "|---|---:|",
        f"| read every trial from MLflow into the Arrow table ({table.num_rows:,} rows x {table.num_columns} columns) "
        f"| {read_seconds:.2f} |",
        f"| picks, seed statistics, eta squared and rank correlations | {select_seconds:.2f} |",
        f"| tag the {tagged:,} picked runs (one `log_batch` each) | {tag_seconds:.2f} |",
        f"| **`sweeper select --no-udr` without start-up** | **{read_seconds + select_seconds + tag_seconds:.2f}** |",
    ]
    return "\n".join(lines) + "\n"
