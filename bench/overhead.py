"""Sweep overhead: what a sweep costs beyond the training it runs.

Two real sweeps (`sweeper launch`, the embedded local Ray, SQLite MLflow) of
identical trials run one at a time, one with a single trial and one with
several. Their wall times differ by the extra trials alone, so the marginal
cost of a trial is that difference per extra trial, and its start-up cost is
the marginal cost less the trial's own training time (from the trainer's
timed report windows: steps x batch / images per second). What is left of the
single-trial sweep is the fixed cost: Python imports, Ray start, MLflow set-up,
summary. From these two figures follows the overhead of a sweep of longer
trials, which would take too long to run here.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH = 64
LONG_TRIAL_S = 120.0  # the trial length the overhead goal is stated for
LONG_SWEEP_TRIALS = 100


def run_sweep(trials: int, steps: int, report_every: int) -> tuple[float, list[float]]:
    """Wall seconds of one sweep of `trials` identical trials, and each trial's training seconds."""
    with tempfile.TemporaryDirectory(prefix="overhead") as folder:
        args = [
            sys.executable, "-m", "sweeper", "launch", str(REPO / "configs" / "smoke.yaml"),
            "--set", "search.objectives.beta_vae.beta=[4.0]", "--set", f"search.seeds={trials}",
            "--set", "resources.cpu=2", "--set", "resources.gpu=0", "--set", "training.threads=2",
            "--set", f"training.steps={steps}", "--set", f"training.report_every={report_every}",
            "--set", f"training.checkpoint_every={steps}",
            "--set", "eval.metrics=[]", "--set", "search.metric=loss", "--set", "search.mode=min",
        ]
        start = time.perf_counter()
        subprocess.run(args, cwd=folder, check=True, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - start
        training = []
        for result_file in Path(folder, "sweeps").glob("*/*/result.json"):
            reports = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
            training.append(sum(report_every * BATCH / r["images_per_sec"] for r in reports))
    if len(training) != trials:
        raise RuntimeError(f"expected {trials} trial results, found {len(training)}")
    return wall, training


def run(quick: bool) -> str:
    steps, report_every, many, repeats = (40, 20, 3, 1) if quick else (200, 50, 6, 2)
    singles = [run_sweep(1, steps, report_every) for _ in range(repeats)]
    multis = [run_sweep(many, steps, report_every) for _ in range(repeats)]
    wall_one = statistics.median(w for w, _ in singles)
    wall_many = statistics.median(w for w, _ in multis)
    train = statistics.median(t for _, times in singles + multis for t in times)
    marginal = (wall_many - wall_one) / (many - 1)
    startup = marginal - train
    fixed = wall_one - marginal
    long_wall = fixed + LONG_SWEEP_TRIALS * (startup + LONG_TRIAL_S)
    long_overhead = 1 - LONG_SWEEP_TRIALS * LONG_TRIAL_S / long_wall
    first_overhead = 1 - LONG_TRIAL_S / (fixed + startup + LONG_TRIAL_S)
    lines = [
        "## Sweep overhead",
        "",
        f"`sweeper launch` on the embedded local Ray with SQLite MLflow: sweeps of 1 and of {many} identical trials "
        f"({steps} steps of batch {BATCH}, a report every {report_every} steps, a checkpoint at the end, no "
        f"evaluation), one trial at a time on both cores; median of {repeats} sweep(s) each"
        f"{' (quick run: not representative)' if quick else ''}. Wall time includes Python imports, Ray's start "
        "and shutdown, MLflow set-up and the summary.",
        "",
        "| figure | seconds |",
        "|---|---:|",
        f"| sweep of 1 trial, wall | {wall_one:.1f} |",
        f"| sweep of {many} trials, wall | {wall_many:.1f} |",
        f"| one trial's training (median, from its timed report windows) | {train:.1f} |",
        f"| marginal cost of a trial: ({many}-trial wall - 1-trial wall) / {many - 1} | {marginal:.1f} |",
        f"| **start-up per trial after the first**: marginal cost - training | **{startup:.2f}** |",
        f"| fixed cost of a sweep: 1-trial wall - marginal cost | {fixed:.1f} |",
        "",
        "The start-up per trial is a difference of wall times of about a minute and more; a value within a second "
        "of zero (or below it) means the start-up is smaller than the run-to-run spread of those wall times.",
        "",
        f"From these, a sweep of {LONG_SWEEP_TRIALS} trials of {LONG_TRIAL_S:.0f} s run one after another would take "
        f"{long_wall / 60:.1f} minutes, an overhead of **{long_overhead:.1%}** over its training time; a sweep of a "
        f"single such trial, {first_overhead:.1%}. Trials reuse their Ray actors (`reuse_actors`), so a worker "
        "process keeps its imports and the rendered dataset from one trial to the next.",
    ]
    return "\n".join(lines) + "\n"
