"""The plan's tracking line: the sweep's metric values per second, and the warning when its store takes fewer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeper.config import load_config
from sweeper.run.budget import BENCHMARKS, budget
from sweeper.run.write_rate import store_capacity, write_rate_lines

REPO = Path(__file__).resolve().parents[3]
CLUSTER = "ray://head:10001"  # a cluster: no cap by this machine's CPUs
BENCH = """<!-- section:tracking -->
## Tracking

| store | store as measured | model reports/s | metric values/s | driver CPU ms per model report |
|---|---|---:|---:|---:|
| sqlite | SQLite file | 3 | 40 | 1.00 |
| server | `mlflow server` (1 worker) on PostgreSQL | 1,500 | 24,000 | 0.20 |
<!-- /section:tracking -->
"""


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def config(*sets: str):
    return load_config(REPO / "configs" / "smoke.yaml", ["search.max_concurrent=4", "training.batch_size=64", *sets])


def test_the_rate_is_models_at_once_times_reports_per_second_times_values(tmp_path):
    bench = tmp_path / "benchmarks.md"
    bench.write_text(BENCH)
    # 1,200 images/s at batch 64, a report every 25 steps: 0.75 reports/s per model; a beta-VAE of 10 latents
    # reports loss, recon, kl, active_latents and 10 KLs, with the step and images/s: 16 values.
    single = config()
    lines = write_rate_lines(single, budget(single, rate=1200), CLUSTER, bench)
    assert lines[:1] == [
        "tracking: 4 models at once x 0.75 reports/s x 16 values = 48 metric values/s "
        "(a report every 25 steps of batch 64)"
    ]
    # Packs of 3: the pack's images/s is its models' together, so each model reports a third as often.
    packed = config("search.pack_seeds=true")
    assert write_rate_lines(packed, budget(packed, rate=1200), CLUSTER, bench)[0].startswith(
        "tracking: 6 models at once x 0.25 reports/s x 16 values = 24 metric values/s"
    )
    # FactorVAE's two own terms are two values more.
    factor = config("search.objectives={factor_vae: {gamma: [10.0]}}", "search.max_concurrent=3")
    assert "x 18 values" in write_rate_lines(factor, budget(factor, rate=1200), CLUSTER, bench)[0]


def test_a_rate_above_the_measured_capacity_warns_naming_report_every(tmp_path):
    bench = tmp_path / "benchmarks.md"
    bench.write_text(BENCH)
    sqlite = config()  # the default store: sqlite:///mlflow.db, measured at 40 values/s here
    lines = write_rate_lines(sqlite, budget(sqlite, rate=1200), CLUSTER, bench)
    assert len(lines) == 2
    assert lines[1].startswith("warning: that is more than the 40 values/s a sqlite store sustains (from ")
    assert "benchmarks.md, section 'Tracking': sqlite)" in lines[1]
    # 48 values/s at a report every 25 steps: every 30 steps gives 40, what the store takes.
    assert lines[1].endswith("raise training.report_every to 30 or more")
    enough = config("training.report_every=30")
    assert len(write_rate_lines(enough, budget(enough, rate=1200), CLUSTER, bench)) == 1
    # A server, measured at 24,000 values/s, takes it.
    server = config("tracking.uri=http://mlflow:5000")
    assert len(write_rate_lines(server, budget(server, rate=1200), CLUSTER, bench)) == 1


def test_no_rate_line_without_a_rate_and_no_warning_without_a_figure(tmp_path):
    absent = tmp_path / "absent.md"
    assert write_rate_lines(config(), budget(config(), benchmarks=absent), CLUSTER, absent) == []
    lines = write_rate_lines(config(), budget(config(), rate=1200), CLUSTER, absent)
    assert len(lines) == 1 and lines[0].startswith("tracking: 4 models at once")
    assert store_capacity("sqlite", absent) is None



def test_the_shipped_benchmarks_give_each_store_the_figure_they_print():
    text = BENCHMARKS.read_text()
    for kind in ("sqlite", "server"):
        printed = re.search(rf"\n\| {kind} \| [^|]+ \| [\d,]+ \| ([\d,]+) \|", text)
        assert printed is not None, kind
        assert store_capacity(kind).values_per_s == float(printed.group(1).replace(",", ""))
