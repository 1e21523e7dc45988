"""The tracking section's pure parts: the table the plan reads, the histories it lengthens, the values it counts."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from bench.__main__ import assemble
from bench.selection import make_sweep
from bench.tracking import (
    CONFIGURATION,
    QUICK,
    Overload,
    Sustained,
    lengthen_histories,
    markdown,
    sweep_config,
    trial_config,
    trial_result,
    values_per_model_report,
)
from sweeper.run.write_rate import SHARED_VALUES, store_capacity
from trainables.report import model_values
from trainables.trial import PACK_SEEDS


def test_the_plan_reads_each_store_s_sustained_values_per_second_from_the_section(tmp_path):
    over = Overload(1.0, 0, 0.0, 0, 0.0, 1)
    measured = {
        "sqlite": (Sustained(model_reports=300, values=5_100, seconds=2.0, cpu_seconds=0.3), over, 17),
        "server": (Sustained(model_reports=3_000, values=51_000, seconds=4.0, cpu_seconds=0.6), over, 17),
    }
    section = markdown(measured, QUICK, ({5: (1.0, 2.0), 600: (1.5, 2.5)}, 100, 1000), 50.0, quick=True)
    path = tmp_path / "benchmarks.md"
    path.write_text(assemble("", {"tracking": section}))
    assert store_capacity("sqlite", path).values_per_s == 2_550
    assert store_capacity("server", path).values_per_s == 12_750
    assert "| sqlite | SQLite file | 150 | 2,550 | 1.00 |" in section  # 0.3 s of CPU over 300 reports


def test_histories_are_lengthened_below_the_latest_values(tmp_path):
    database = tmp_path / "mlflow.db"
    ref = make_sweep(f"sqlite:///{database}", configurations=1)
    client = MlflowClient(ref.tracking_uri)
    runs = client.search_runs([ref.experiment_id], "tags.`sweeper.role` = 'trial'")
    before = {run.info.run_id: run.data.metrics for run in runs}
    added = lengthen_histories(database, points=20)
    after = client.search_runs([ref.experiment_id], "tags.`sweeper.role` = 'trial'")
    assert {run.info.run_id: run.data.metrics for run in after} == before  # the sweep's values, unchanged
    for run in after:
        for key in ("loss", "images_per_sec", "kl/0"):
            history = client.get_metric_history(run.info.run_id, key)
            assert len(history) == 20 and len({m.step for m in history}) == 20, key
            assert max(history, key=lambda m: m.step).value == run.data.metrics[key]
        assert len(client.get_metric_history(run.info.run_id, "disent/mig")) == 1  # a final score stays one
    # 5 runs: 6 training metrics from 5 points to 20, 10 KLs from 1 to 20.
    assert added == 5 * (6 * 15 + 10 * 19)


def test_a_report_carries_the_values_the_plan_counts():
    config = sweep_config(2)
    result = trial_result(config, tuple(trial_config(config)[PACK_SEEDS]))
    assert values_per_model_report(config, result) == model_values("factor_vae", 10) + SHARED_VALUES
    assert CONFIGURATION.objective == "factor_vae"
