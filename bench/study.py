"""Benchmark of a study at the reference study's scale: the analyses and the page over 10,080 models.

The models are synthetic, shaped like the 2019 study's: 7 datasets x 6
objectives x 6 hyperparameter values x 40 seeds, each with every score a
trial reports (the default metrics' and the downstream task's) and UDR. A
score is an objective effect plus a hyperparameter effect plus seed noise of
known variances, the same draw for every score but for noise of its own,
so the scores agree with each other in part, as real ones do. Timed, median
of 3 each, on the study table as `sweeper study` holds it after reading:
- the analyses (`sweeper.analyse.study_report.analyse`): variance shares of
  every score with 1,000 bootstrap resamples, Spearman matrices, unsupervised
  against supervised scores, UDR selection, transfer across datasets and seeds;
- the folder: Parquet, the figures and the HTML page.
Reading the sweeps from MLflow is `sweeper select`'s reading, timed in the
selection section; logging the run is not timed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.machine import cores, cpu_model, matmul_gflops
from sweeper.analyse.selection import UDR
from sweeper.analyse.study_report import REPLICATES, analyse, write_folder
from sweeper.analyse.study_stats import SHARES
from sweeper.analyse.study_table import StudyModels
from trainables.settings import DEFAULT_METRICS, METRIC_OUTPUTS

DATASETS = ("dsprites", "dsprites-color", "dsprites-noisy", "dsprites-scream", "smallnorb", "cars3d", "shapes3d")
OBJECTIVES = {  # the study's grids (disentanglement_lib unsupervised_study_v1)
    "beta_vae": ("beta", (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)),
    "annealed_vae": ("c_max", (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)),
    "factor_vae": ("gamma", (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)),
    "dip_vae_i": ("lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)),
    "dip_vae_ii": ("lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)),
    "beta_tcvae": ("beta", (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)),
}
SEEDS = 40
VARIANCES = {"objective": 0.5, "hyperparameter": 1.0, "seed": 1.0}  # of the effect every score shares
OWN_NOISE = 0.5  # variance of each score's own noise, on top
SCORES = tuple(f"disent/{s}" for m in (*DEFAULT_METRICS, "downstream") for s in METRIC_OUTPUTS[m]) + (UDR,)
REPEATS = 3


def study_table(seeds: int, rng: np.random.Generator) -> pa.Table:
    """Every dataset x objective x value x seed, with the scores drawn as the module docstring says."""
    rows = {name: [] for name in ("sweep", "dataset", "objective", "beta", "gamma", "c_max", "lambda_od", "seed")}
    effects = []
    for dataset in DATASETS:
        for objective, (weight, values) in OBJECTIVES.items():
            objective_effect = rng.normal(0, np.sqrt(VARIANCES["objective"]))
            for value in values:
                configuration_effect = objective_effect + rng.normal(0, np.sqrt(VARIANCES["hyperparameter"]))
                for seed in range(seeds):
                    rows["sweep"].append(f"{dataset}-{objective}")
                    rows["dataset"].append(dataset)
                    rows["objective"].append(objective)
                    for name in ("beta", "gamma", "c_max", "lambda_od"):
                        rows[name].append(value if name == weight else None)
                    rows["seed"].append(seed)
                    effects.append(configuration_effect + rng.normal(0, np.sqrt(VARIANCES["seed"])))
    shared = np.array(effects)
    columns = {name: pa.array(values) for name, values in rows.items()}
    columns["run_id"] = pa.array([f"run{i:05d}" for i in range(shared.size)])
    for score in SCORES:
        columns[score] = pa.array(shared + rng.normal(0, np.sqrt(OWN_NOISE), shared.size))
    return pa.table(columns)


def _median_of(fn, repeats: int = REPEATS) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run(quick: bool = False) -> str:
    seeds = 4 if quick else SEEDS
    gflops, load = matmul_gflops(), os.getloadavg()[0]
    table = study_table(seeds, np.random.default_rng(0))
    scores = list(SCORES)
    analyse_seconds, found = _median_of(lambda: analyse(table, scores, "disent/mig"))
    with tempfile.TemporaryDirectory() as root:
        out = Path(root) / "study"
        quiet = lambda line: None  # noqa: E731 - the command's progress lines
        write_seconds, written = _median_of(lambda: write_folder(StudyModels(table), found, ["bench"], out, quiet))
        figures = sum(1 for path in written if path.suffix == ".png")
        page_mb = written[-1].stat().st_size / 1e6

    share_of = {share: np.nanmedian(found.shares[share].to_numpy(zero_copy_only=False)) for share in SHARES}
    total = sum(VARIANCES.values()) + OWN_NOISE
    truth = {
        "objective": VARIANCES["objective"] / total,
        "hyperparameter": VARIANCES["hyperparameter"] / total,
        "seed": (VARIANCES["seed"] + OWN_NOISE) / total,
    }
    transfer = found.dataset_transfer["probability"].to_numpy()
    lines = [
        f"## A study over {table.num_rows:,} models",
        "",
        f"{table.num_rows:,} synthetic finished models ({len(DATASETS)} datasets x {len(OBJECTIVES)} objectives x "
        f"6 hyperparameter values x {seeds} seeds, each with {len(SCORES)} scores: the default metrics', the "
        f"downstream task's and UDR), as `sweeper study` holds them after reading the sweeps; every score an "
        f"objective effect, a hyperparameter effect and seed noise of known variances (bench/study.py). "
        f"Measured on {cpu_model()} ({cores()} cores), float32 matmul in the same process {gflops:.0f} GFLOP/s, "
        f"1-minute load average {load:.1f} before (above {cores()}, other work shared the machine)."
        + (" Quick run: not representative." if quick else ""),
        "",
        "| step | seconds (median of 3) |",
        "|---|---:|",
        f"| the analyses: variance shares of {len(SCORES)} scores x {len(DATASETS)} datasets with {REPLICATES:,} "
        f"bootstrap resamples each, Spearman matrices, unsupervised vs supervised scores, UDR selection, transfer "
        f"across datasets and seeds | {analyse_seconds:.2f} |",
        f"| the folder: Parquet, {figures} figures and the HTML page ({page_mb:.1f} MB) | {write_seconds:.2f} |",
        f"| **`sweeper study` after reading, before logging** | **{analyse_seconds + write_seconds:.2f}** |",
        "",
        "What the analyses found, against what the draw put in (medians over scores and datasets):",
        "",
        "| variance share | found | drawn |",
        "|---|---:|---:|",
        *(f"| {share} | {share_of[share]:.3f} | {truth[share]:.3f} |" for share in SHARES),
        "",
        f"Transfer across datasets (independent effects per dataset): mean probability {np.mean(transfer):.2f} "
        f"over {transfer.size} ordered pairs (0.5 expected).",
    ]
    return "\n".join(lines) + "\n"
