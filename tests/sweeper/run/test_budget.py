"""The work of a sweep and its estimate in `launch --dry-run`: images, and time from the rate it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeper.config import load_config
from sweeper.run.budget import BENCHMARKS, budget

REPO = Path(__file__).resolve().parents[3]
BENCH = """<!-- section:training -->
| figure | value |
|---|---|
| training throughput | 1,200 images/s (windows: 1, 2, 3) |
<!-- /section:training -->
<!-- section:gpu -->
| batch | autocast | `compile` | images/s | steps/s | achieved TFLOP/s | peak allocated |
|---|---|---|---|---|---|---|
| 64 | off (float32) | false | 10,000 | 156 | 0.8 | 1 MiB |
| 64 | bfloat16 | false | 9,000 | 140 | 0.7 | 1 MiB |

| trials per GPU | `compile` | total images/s | per trial | achieved TFLOP/s | largest reserved per trial |
|---|---|---|---|---|---|
| 4 | false | 40,000 | 9,500 | 3 | 1 MiB |
<!-- /section:gpu -->
"""


def config(*sets: str):
    return load_config(REPO / "configs" / "smoke.yaml", ["search.pack_seeds=true", "training.batch_size=64", *sets])


def test_the_dry_run_estimate_follows_from_the_rate_it_names(tmp_path, sweeper_cli):
    planned = sweeper_cli(
        ["launch", str(REPO / "configs" / "smoke.yaml"), "--dry-run", "--rate", "400", "--set", "training.steps=500",
         "--set", "training.batch_size=64"],
        tmp_path,
    )
    assert planned.returncode == 0, planned.stderr
    assert "work: 6 models x 500 steps x batch 64 = 192,000 images" in planned.stdout
    assert "estimate: 8 min of trial time" in planned.stdout  # 192,000 / 400 = 480 s
    assert "0.133 CPU-hours (at 400 images/s per trial, from --rate)" in planned.stdout
    # 400 images/s at batch 64, a report every 25 steps: 0.25 reports/s of 16 values per model.
    assert re.search(r"\n  tracking: \d+ models? at once x 0.25 reports/s x 16 values = [\d,]+ metric", planned.stdout)
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_the_bench_figure_is_the_one_for_the_trials_device(tmp_path):
    bench = tmp_path / "benchmarks.md"
    bench.write_text(BENCH)
    cpu = budget(config(), benchmarks=bench)
    assert cpu.rate.images_per_s == 1200 and "'Training step (CPU)': training throughput" in cpu.rate.source
    assert cpu.trial_hours == pytest.approx(6 * 150 * 64 / 1200 / 3600)
    shared = budget(config("resources.gpu=0.25"), benchmarks=bench)
    assert shared.rate.images_per_s == 9500 and "4 trials per GPU, compile false" in shared.rate.source
    alone = budget(config("resources.gpu=1"), benchmarks=bench)
    assert alone.rate.images_per_s == 10000 and "one trial, batch 64, float32" in alone.rate.source
    assert budget(config("resources.gpu=1", "training.batch_size=32"), benchmarks=bench).rate is None
    assert budget(config(), benchmarks=tmp_path / "absent.md").rate is None


def test_the_shipped_benchmarks_give_the_cpu_figure_they_print():
    rate = budget(config()).rate
    assert rate is not None
    printed = re.search(r"\| training throughput \| ([\d,.]+) images/s", BENCHMARKS.read_text())
    assert printed is not None
    assert rate.images_per_s == float(printed.group(1).replace(",", ""))
