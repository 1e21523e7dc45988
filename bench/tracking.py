"""Benchmark of the tracking path: what the driver's callback writes per second, and the analysis of long histories.

Writes go through the sweep's own path: Ray Tune `Trial` objects, the
`MLflowTrialCallback` the driver registers, its `TrackingBuffer` and
`SweepTracking`, into two stores: a SQLite file, and an `mlflow server`
(one worker) on PostgreSQL, started as the tracking tests start them. Every
trial is a pack of models whose result is a real `Trainer` report (one
training step's `TrialReport` with the step, Tune's own keys and the
placement added, as the trainable reports it), so each model's report holds
the values a sweep logs. Per store:
- sustained: every trial reports as soon as the callback has taken the last
  report, for `Sizes.sustain_s` seconds, then the buffer is drained: the
  store's rate in model reports and metric values per second, and the
  driver's CPU time (time.process_time) per model report, which for SQLite
  includes the database's own work;
- overload: reports offered at `Sizes.overload` times that rate for
  `Sizes.overload_s` seconds, as Tune would hand them over: how far the driver
  is behind when the offer stops (reports not yet taken, and seconds), the
  most the buffer held, how long it takes to catch up; then every history is
  read back and must hold every report.
Then the analysis: `sweeper select`'s and `sweeper report`'s work (without
UDR and the models' figures, which read checkpoints) on the selection
section's 1,000 runs with 5 history points, and on the same runs with 600.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from ray.tune.experiment import Trial

from bench import servers
from bench.machine import cores, matmul_gflops
from bench.selection import SWEEP_ID, make_sweep
from sweeper.analyse.report import write_report
from sweeper.analyse.results import SweepRef
from sweeper.analyse.tagging import select_and_tag
from sweeper.config import SweepConfig, load_config
from sweeper.run import space
from sweeper.run.write_rate import CAPACITY_HEADER
from sweeper.tags import ROLE_TAG, ROLE_TRIAL, TRIAL_TAG
from sweeper.tracking.callback import MLflowTrialCallback, model_results, reported_metrics
from sweeper.tracking.client import SweepTracking, connect, finish_tracking
from trainables.trainer import Trainer
from trainables.trial import CONFIGURATION_KEY, PACK_SEEDS, Configuration, TrialSpec

REPO = Path(__file__).resolve().parents[1]
CONFIGURATION = Configuration.of("factor_vae", {"gamma": 10.0})  # the most values per report, with dip_vae
STORES = {"sqlite": "SQLite file", "server": "`mlflow server` (1 worker) on PostgreSQL"}
LONG_HISTORY = 600
SELECT_REPEATS = 3


@dataclass(frozen=True)
class Sizes:
    trials: int
    models_per_trial: int
    sustain_s: float
    overload: float  # offered rate, as a multiple of the sustained one
    overload_s: float
    configurations: int  # of the analysed sweep, times the selection section's 5 seeds


FULL = Sizes(trials=8, models_per_trial=5, sustain_s=20.0, overload=2.0, overload_s=20.0, configurations=200)
QUICK = Sizes(trials=2, models_per_trial=3, sustain_s=3.0, overload=2.0, overload_s=3.0, configurations=20)


@dataclass(frozen=True)
class Sustained:
    model_reports: int
    values: int
    seconds: float
    cpu_seconds: float

    @property
    def reports_per_s(self) -> float:
        return self.model_reports / self.seconds

    @property
    def values_per_s(self) -> float:
        return self.values / self.seconds

    @property
    def cpu_ms_per_report(self) -> float:
        return 1000 * self.cpu_seconds / self.model_reports


@dataclass(frozen=True)
class Overload:
    offered_values_per_s: float
    behind_reports: int  # model reports offered and not yet taken by the callback when the offer stopped
    behind_s: float
    pending: int  # the most writes the buffer held at once while the reports were offered
    catch_up_s: float
    points_checked: int  # `loss` points read back, one per model report


def sweep_config(models_per_trial: int) -> SweepConfig:
    return load_config(REPO / "configs" / "smoke.yaml", [f"search.seeds={models_per_trial}", "search.pack_seeds=true"])


def trial_result(config: SweepConfig, seeds: tuple[int, ...]) -> dict[str, Any]:
    """One report of a trial as Tune hands it to the callbacks: a real Trainer's report after one
    step, with the step, the placement and Tune's own keys."""
    trainer = Trainer(config.trial_settings(), CONFIGURATION, seeds)
    result = trainer.train(1).tune_metrics()
    result.update({"ray_node_id": "0" * 56, "gpu_ids": "0"})  # the trainable's placement
    result.update({
        "timestamp": 0, "time_this_iter_s": 0.1, "time_total_s": 1.0, "training_iteration": 1, "pid": 1,
        "hostname": "node-1", "node_ip": "10.0.0.1", "time_since_restore": 1.0, "iterations_since_restore": 1,
        "date": "2026-01-01_00-00-00", "done": False, "trial_id": "", "experiment_tag": "",
    })  # fmt: skip
    return result


def values_per_model_report(config: SweepConfig, result: dict[str, Any]) -> int:
    """The metric values the callback logs for one model of one report."""
    spec = TrialSpec.from_config(trial_config(config))
    return len(reported_metrics(model_results(spec, {**result, "step": 1})[spec.seeds[0]], 1, 0))


def trial_config(config: SweepConfig) -> dict[str, Any]:
    return {
        CONFIGURATION_KEY: CONFIGURATION.to_config(),
        PACK_SEEDS: space.seeds(config),
        "settings": config.trial_settings().model_dump(mode="json"),
    }


class Driver:
    """The driver's side of a sweep's tracking, fed reports the way Tune's event loop feeds its callbacks."""

    def __init__(self, uri: str, folder: Path, sizes: Sizes) -> None:
        self.config = sweep_config(sizes.models_per_trial)
        self.tracking = SweepTracking.start(connect(uri), self.config, "bench-tracking")
        self.lines: list[str] = []
        self.callback = MLflowTrialCallback(self.tracking, folder, self.lines.append)
        self.callback.setup()
        shape = trial_config(self.config)
        self.trials = [Trial("train", config=shape, trial_id=f"bench_{i:05d}", stub=True) for i in range(sizes.trials)]
        self.template = trial_result(self.config, tuple(shape[PACK_SEEDS]))
        self.values = values_per_model_report(self.config, self.template)
        self.models = sizes.trials * sizes.models_per_trial
        self.step = 0
        self.delivered = 0  # trial reports handed to the callback
        self.reports: dict[str, int] = {}  # by trial id
        for trial in self.trials:
            self.callback.on_trial_start(0, self.trials, trial)

    def deliver(self) -> None:
        """The next trial's report, in turn; a trial's step advances once every trial has reported."""
        trial = self.trials[self.delivered % len(self.trials)]
        if self.delivered % len(self.trials) == 0:
            self.step += 1
        self.delivered += 1
        self.reports[trial.trial_id] = self.step
        result = {**self.template, "step": self.step, "training_iteration": self.step, "trial_id": trial.trial_id}
        trial.update_last_result(result)  # as Tune does before its callbacks see the result
        self.callback.on_trial_result(self.step, self.trials, trial, result)

    def sustained(self, seconds: float) -> Sustained:
        for _ in self.trials:  # the runs are opened and their params written before the timing
            self.deliver()
        self.callback.buffer.drain(60)
        first, wall, cpu = self.delivered, time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < seconds or self.delivered % len(self.trials):
            self.deliver()
        if not self.callback.buffer.drain(120):  # what the buffer still holds is written within the time
            raise RuntimeError(f"{self.callback.buffer.pending} writes not taken: {self.lines}")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        model_reports = (self.delivered - first) * self.models // len(self.trials)
        return Sustained(model_reports, model_reports * self.values, wall, cpu)

    def overload(self, trial_reports_per_s: float, seconds: float) -> Overload:
        self.callback.buffer.drain(60)
        start = time.perf_counter()
        first, pending = self.delivered, 0
        while (now := time.perf_counter()) - start < seconds:
            due = start + (self.delivered - first) / trial_reports_per_s
            if now >= due:
                self.deliver()
                pending = max(pending, self.callback.buffer.pending)
            else:
                self.callback.on_step_end(0, self.trials)  # Tune's loop between events
                time.sleep(min(due - now, 0.005))
        stopped = time.perf_counter()
        offered = first + int(seconds * trial_reports_per_s)
        behind = max(0, offered - self.delivered)
        behind_s = max(0.0, stopped - (start + (self.delivered - first) / trial_reports_per_s))
        while self.delivered < offered:
            self.deliver()
        for trial in self.trials:
            self.callback.on_trial_complete(0, self.trials, trial)
        self.callback.on_experiment_end(self.trials)
        unwritten = finish_tracking(self.tracking, self.callback.folder, "FINISHED", 120, self.lines.append)
        catch_up = time.perf_counter() - stopped
        if unwritten:
            raise RuntimeError(f"{unwritten} writes not taken by {self.tracking.tracking_uri}: {self.lines}")
        per_model = self.models // len(self.trials)
        return Overload(
            trial_reports_per_s * per_model * self.values,
            behind * per_model,
            behind_s,
            pending,
            catch_up,
            self.points_in_store(),
        )

    def points_in_store(self) -> int:
        """Every model's `loss` history, read back: one point per report it was given, or an error."""
        client = self.tracking.client
        runs = client.search_runs([self.tracking.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'", max_results=1000)
        if len(runs) != self.models:
            raise RuntimeError(f"{len(runs)} runs in the store, {self.models} models")
        total = 0
        for run in runs:
            expected = self.reports[run.data.tags[TRIAL_TAG]]
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
            if sorted(steps) != list(range(1, expected + 1)):
                raise RuntimeError(f"run {run.info.run_id}: {len(steps)} loss points, {expected} reports")
            total += len(steps)
        return total


def measure_store(uri: str, folder: Path, sizes: Sizes) -> tuple[Sustained, Overload, int]:
    driver = Driver(uri, folder, sizes)
    steady = driver.sustained(sizes.sustain_s)
    trial_rate = steady.reports_per_s / (driver.models / len(driver.trials))
    return steady, driver.overload(sizes.overload * trial_rate, sizes.overload_s), driver.values


def with_store(kind: str, folder: Path, work: Callable[[str], Any]) -> Any:
    """`work(uri)` on a fresh store of `kind`."""
    if kind == "sqlite":
        return work(f"sqlite:///{folder / 'mlflow.db'}")
    with servers.postgres() as backend, servers.mlflow_server(folder, backend) as server:
        return work(server.uri)


# -- the analysis of long histories ----------------------------------------------------------------
def lengthen_histories(database: Path, points: int) -> int:
    """Give every trial run's training metrics (those with more than a final value) and its `kl/<i>`
    `points` points each: rows of MLflow's own `metrics` table at the free steps up to the run's
    last one, holding the metric's latest value, with `latest_metrics` moved to the new last step,
    so the values `search_runs` returns stay those of the sweep. Written with SQLite's
    executemany: through `log_batch` 3,600 points take about half a second per run here.
    Returns the rows added."""
    with sqlite3.connect(database) as db:
        latest = db.execute(
            "SELECT l.run_uuid, l.key, l.value, l.timestamp, count(*) FROM latest_metrics l "
            "JOIN tags t ON t.run_uuid = l.run_uuid AND t.key = 'sweeper.role' AND t.value = 'trial' "
            "JOIN metrics m ON m.run_uuid = l.run_uuid AND m.key = l.key GROUP BY l.run_uuid, l.key"
        ).fetchall()
        steps: dict[str, dict[str, set[int]]] = {}
        for run, key, step in db.execute("SELECT run_uuid, key, step FROM metrics"):
            steps.setdefault(run, {}).setdefault(key, set()).add(step)
        rows = []
        for run, key, value, timestamp, count in latest:
            if count == 1 and not key.startswith("kl/"):
                continue  # a final score: no history in a sweep either
            last = max(max(held) for held in steps[run].values())
            free = (step for step in range(1, last + 1) if step not in steps[run][key])
            rows += [(key, value, timestamp, run, step, 0) for step, _ in zip(free, range(points - count))]
        db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)", rows)
        db.execute(
            "UPDATE latest_metrics SET step = (SELECT max(m.step) FROM metrics m "
            "WHERE m.run_uuid = latest_metrics.run_uuid AND m.key = latest_metrics.key)"
        )
    return len(rows)


def analysis_seconds(uri: str, ref: SweepRef, out: Path) -> tuple[float, float]:
    """Median seconds of `sweeper select`'s work (read, pick, tag) over SELECT_REPEATS, and the seconds
    of `sweeper report`'s page after the last."""
    client = MlflowClient(uri)
    select_times = []
    for _ in range(SELECT_REPEATS):
        start = time.perf_counter()
        chosen = select_and_tag(client, ref, "disent/mig", udr=False)
        select_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    write_report(client, chosen, out, echo=lambda line: None)
    return statistics.median(select_times), time.perf_counter() - start


def analysis(folder: Path, configurations: int) -> tuple[dict[int, tuple[float, float]], int, int]:
    """{history points: (select s, report s)}, the runs, and the history rows added."""
    short = folder / "short.db"
    ref = make_sweep(f"sqlite:///{short}", configurations)
    runs = len(MlflowClient(ref.tracking_uri).search_runs([ref.experiment_id], max_results=5000)) - 1
    long = folder / "long.db"
    shutil.copy(short, long)
    added = lengthen_histories(long, LONG_HISTORY)
    timings = {}
    for points, database in ((5, short), (LONG_HISTORY, long)):
        uri = f"sqlite:///{database}"
        timings[points] = analysis_seconds(uri, SweepRef(SWEEP_ID, uri, ref.experiment_id, ref.parent_run_id, None),
                                           folder / f"out-{points}")  # fmt: skip
    return timings, runs, added


# -- the section -----------------------------------------------------------------------------------
def markdown(
    measured: dict[str, tuple[Sustained, Overload, int]], sizes: Sizes, analysed: tuple, gflops: float, quick: bool
) -> str:
    models = sizes.trials * sizes.models_per_trial
    values = next(iter(measured.values()))[2]
    lines = [
        "## Tracking",
        "",
        f"The driver's `MLflowTrialCallback` (with its `TrackingBuffer`) fed by {sizes.trials} Ray Tune trials of "
        f"{sizes.models_per_trial} packed models each ({models} runs), every report a real `Trainer` report of "
        f"`{CONFIGURATION.label()}` with {values} metric values per model; float32 matmul in the same process: "
        f"{gflops:.0f} GFLOP/s; 1-minute load average {os.getloadavg()[0]:.1f} when the section was written (above "
        f"{cores()}, other work shared the machine)."
        + (" Quick run: not representative." if quick else ""),
        "",
        f"Sustained: each trial reports again as soon as the callback has taken its last report, for "
        f"{sizes.sustain_s:.0f} s, then the buffer is drained (its time counted). A model report is one model's values of one report; the driver's CPU time "
        "includes, for SQLite, the database's own work (a server's is in its own process). `sweeper launch` "
        "reads the metric values/s of this table as the store's capacity.",
        "",
        f"| {CAPACITY_HEADER} | store as measured | model reports/s | metric values/s | driver CPU ms per model report |",
        "|---|---|---:|---:|---:|",
    ]
    for kind, (steady, _, _) in measured.items():
        lines.append(
            f"| {kind} | {STORES[kind]} | {steady.reports_per_s:,.0f} | {steady.values_per_s:,.0f} "
            f"| {steady.cpu_ms_per_report:.2f} |"
        )
    lines += [
        "",
        f"Overload: reports offered at {sizes.overload:g} x the sustained rate for {sizes.overload_s:.0f} s, as "
        "Tune hands them to the callback; then the trials end and every write is flushed. Behind: the model "
        "reports offered that the callback had not yet taken when the offer stopped, and how late the next one "
        "was: while the buffer writes, Tune's event loop waits, so what a store cannot keep up with waits before "
        "the callback; the buffer itself holds about a second of reports (`HOLD_S`). Every model's `loss` history is read back afterwards and holds every report.",
        "",
        "| overloaded store | offered metric values/s | model reports behind | seconds behind | most writes held in the buffer "
        "| catch-up after the offer (s) | `loss` points read back |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, (_, over, _) in measured.items():
        lines.append(
            f"| {kind} | {over.offered_values_per_s:,.0f} | {over.behind_reports:,} | {over.behind_s:.1f} "
            f"| {over.pending:,} | {over.catch_up_s:.1f} | {over.points_checked:,} |"
        )
    timings, runs, added = analysed
    lines += [
        "",
        f"Long histories: the selection section's {runs:,} finished runs in a SQLite store, as written there "
        f"(5 points of each training metric), against a copy whose training metrics and KL per latent hold "
        f"{LONG_HISTORY} points each ({added:,} rows added, as `log_batch` writes them). Select is `sweeper "
        f"select --no-udr`'s work (read, pick, tag), median of {SELECT_REPEATS}; report is the page and its "
        "figures, once, without the models' own (no checkpoints here).",
        "",
        "| history points per metric | select (s) | report (s) |",
        "|---:|---:|---:|",
    ]
    for points, (select_s, report_s) in timings.items():
        lines.append(f"| {points} | {select_s:.2f} | {report_s:.2f} |")
    return "\n".join(lines) + "\n"


def run(quick: bool) -> str:
    sizes = QUICK if quick else FULL
    gflops = matmul_gflops()
    measured = {}
    for kind in STORES:
        with tempfile.TemporaryDirectory(prefix=f"bench-tracking-{kind}-") as folder:
            measured[kind] = with_store(kind, Path(folder), lambda uri: measure_store(uri, Path(folder), sizes))
    with tempfile.TemporaryDirectory(prefix="bench-tracking-analysis-") as folder:
        analysed = analysis(Path(folder), sizes.configurations)
    return markdown(measured, sizes, analysed, gflops, quick)
