"""GPU training: packed trials of 1 to 20 models, alone on the card and several per card.

A reference beta-VAE step is about 5 GFLOP at batch 64: far too little work to
fill a modern GPU, so one model is bound by the CPU thread that launches its
kernels. A packed trial (`search.pack_seeds`) trains S seeds as one stacked
model, S models for about the kernels of one, and several packed trials may
share a card (`gpu: 1/N`, each capped to its share of memory, started
together as Ray would start them).

Goals for packs, targets rather than measurements: at least 250,000 images/s
per H100 at batch 64 per model; moonshot 800,000.

Every row states what ran:
- A compiled row really ran compiled. Dynamo is reset before it: its limit of
  8 cache entries per code object would otherwise turn later rows of other
  shapes eager with only a warning. A row whose warm-up made no graph, broke
  one, or that compiled again while being timed fails (`NotCompiled`) rather
  than report eager figures as compiled.
- Peak memory is the steady state's: the peak is reset after the warm-up, so
  autotuning and CUDA-graph capture are not in it.
- The precision is read back from PyTorch: bfloat16 autocast or float32, and
  which float32 operations ran in TF32 (`training.tf32`).
- The draws' time per step (`Trainer.draw`, eager by design) stands beside
  the step's, the measure of what launching them costs.

Rows are few and run in order of importance within a time budget, so that the
whole GPU check (bench/gpu_check.sh: the GPU tests, then this section) fits in
six minutes on one H100; a row the budget leaves out is listed as not
measured. `--smoke` runs the same code on the CPU at tiny sizes, so that the
check cannot rot between GPU runs; its figures mean nothing.

`python -m bench --only gpu` writes this section into docs/benchmarks.md;
`python -m bench.gpu section` (what the check runs) writes it to files as
each row finishes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bench.machine import cores, cpu_model
from bench.training import flops_per_image
from trainables.runtime import exact_float32, tf32_mode
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration

BETA_4 = Configuration.of("beta_vae", {"beta": 4.0})
GOAL, MOONSHOT = 250_000, 800_000  # images/s per H100 for packs at batch 64 per model
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pack:
    """One packed trial alone on the card."""

    models: int
    amp: bool = False
    compiled: bool = False
    tf32: str = "convolutions"

    def label(self) -> str:
        tf32 = "" if self.tf32 == "convolutions" else f", TF32 {self.tf32}"
        return (
            f"pack of {self.models}, {'compiled' if self.compiled else 'eager'}, "
            f"{'bfloat16' if self.amp else 'float32'}{tf32}"
        )


@dataclass(frozen=True)
class Shared:
    """Several packed trials sharing the card (`gpu: 1/N`), float32, each in its own process."""

    trials: int
    models: int
    compiled: bool = True

    def label(self) -> str:
        return f"{self.trials} packs of {self.models} per card, {'compiled' if self.compiled else 'eager'}"


@dataclass(frozen=True)
class Plan:
    """What one run measures, and at what sizes."""

    device: str
    batch: int  # per model
    warmup: int  # steps before timing: compilation, autotuning, CUDA-graph capture
    window: int  # steps per timed window
    windows: int
    seconds: float  # timed span of a shared-card row
    matmul: int  # side of the matrix product timed for the device's rate
    budget: float  # seconds for the whole section; rows not started by then are not measured
    rows: tuple[Pack | Shared, ...]  # in order of importance


GPU_PLAN = Plan(
    device="cuda", batch=64, warmup=30, window=100, windows=3, seconds=5.0, matmul=8192, budget=150.0,
    rows=(
        Pack(20), Pack(20, compiled=True), Pack(20, amp=True), Pack(1), Pack(5),
        Pack(1, compiled=True), Pack(5, compiled=True), Shared(2, 20), Pack(20, amp=True, compiled=True),
        Shared(4, 5), Pack(1, amp=True), Pack(5, amp=True), Pack(20, tf32="off"), Shared(4, 1),
    ),
)  # fmt: skip
SMOKE_PLAN = Plan(
    device="cpu", batch=4, warmup=2, window=3, windows=2, seconds=1.0, matmul=256, budget=600.0,
    rows=(Pack(1), Pack(2), Pack(2, amp=True), Pack(2, compiled=True), Pack(2, tf32="off"), Shared(2, 2, False)),
)  # fmt: skip


class NotCompiled(RuntimeError):
    """A row asked for `training.compile` but its step ran, wholly or partly, eagerly."""


@dataclass
class Row:
    """One row's outcome: figures when measured, else why not."""

    label: str
    kind: str  # "pack" or "shared"
    status: str = "not measured"  # "measured", "failed" or "not measured"
    reason: str = "not reached: the run ended before it"
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


# -- one device, either kind ------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(dtype: torch.dtype, device: torch.device, size: int, runs: int = 10) -> float:
    """Rate of a size^3 matrix product on random data, median of `runs`."""
    generator = torch.Generator(device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    times = []
    for run in range(runs + 3):  # three unmeasured first
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if run >= 3:
            times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e12


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """Peak allocated since the last reset; None on a CPU, where the allocator keeps no such count."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def precision(trainer: Trainer) -> str:
    """What the trainer's step computes in, as PyTorch's switches stand after the trainer set them."""
    if trainer.use_amp:
        return "bfloat16 autocast"
    return f"float32, TF32 {tf32_mode()}" if trainer.device.type == "cuda" else "float32 (CPU)"


def dynamo_counts() -> tuple[int, int]:
    """Graphs Dynamo has made and graph breaks it has met in this process so far."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def require_compiled(label: str, before: tuple[int, int], warmed: tuple[int, int], after: tuple[int, int]) -> None:
    """Fail a compiled row whose warm-up made no graph or broke one, or that compiled while being timed."""
    graphs, breaks = warmed[0] - before[0], warmed[1] - before[1]
    if graphs == 0 or breaks:
        raise NotCompiled(
            f"{label}: `compile` was on but the step ran eagerly "
            f"({graphs} graphs made and {breaks} graph breaks met during the warm-up)"
        )
    if after != warmed:
        raise NotCompiled(f"{label}: Dynamo compiled again while the row was timed; its figures include compiling")


def pack_settings(plan: Plan, amp: bool, compiled: bool, tf32: str = "convolutions") -> TrialSettings:
    training = {
        "batch_size": plan.batch, "device": plan.device, "amp": amp, "compile": compiled, "threads": 1, "tf32": tf32,
    }  # fmt: skip
    return TrialSettings.model_validate({"training": training})


def draw_seconds(trainer: Trainer, runs: int = 20) -> float:
    """Seconds per step of the trainer's eager draws (batches and noise of every model), launches included."""
    synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(runs):
        trainer.draw()
    synchronize(trainer.device)
    return (time.perf_counter() - start) / runs


# -- rows -----------------------------------------------------------------------------------


def measure_pack(pack: Pack, plan: Plan) -> dict[str, Any]:
    """One packed trial alone: images/s of all its models (median of the windows) and its steady state."""
    device = torch.device(plan.device)
    if pack.compiled:
        torch._dynamo.reset()
    before = dynamo_counts()
    trainer = Trainer(pack_settings(plan, pack.amp, pack.compiled, pack.tf32), BETA_4, range(pack.models))
    ran_in = precision(trainer)
    trainer.train(plan.warmup)
    warmed = dynamo_counts()
    reset_peak(device)
    rates = [trainer.train(plan.window).images_per_sec for _ in range(plan.windows)]
    peak = peak_mib(device)
    if pack.compiled:
        require_compiled(pack.label(), before, warmed, dynamo_counts())
    draws = draw_seconds(trainer)
    del trainer
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rate = statistics.median(rates)
    return {
        "images_per_sec": rate,
        "per_model": rate / pack.models,
        "step_ms": 1e3 * pack.models * plan.batch / rate,
        "draw_ms": 1e3 * draws,
        "precision": ran_in,
        "peak_mib": peak,
    }


def shared_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One process of a shared-card row: train, say ready, wait for the start, train for `seconds`."""
    plan = Plan(**{**config["plan"], "rows": ()})
    models, compiled, ready, go = config["models"], config["compiled"], Path(config["ready"]), Path(config["go"])
    before = dynamo_counts()
    trainer = Trainer(pack_settings(plan, False, compiled), BETA_4, range(models), gpu_share=config["share"])
    trainer.train(plan.warmup)
    warmed = dynamo_counts()
    ready.touch()
    deadline = time.monotonic() + config["wait"]
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no start signal at {go} within {config['wait']:.0f} s")
        time.sleep(0.01)
    start, images = time.time(), 0
    while time.time() - start < plan.seconds:
        trainer.train(plan.window)  # the report at its end waits for the device
        images += plan.window * plan.batch * models
    end = time.time()
    if compiled:
        require_compiled(f"a pack of {models} sharing the card", before, warmed, dynamo_counts())
    device = trainer.device
    reserved = torch.cuda.max_memory_reserved(device) / 2**20 if device.type == "cuda" else None
    return {"start": start, "end": end, "images": images, "reserved_mib": reserved, "precision": precision(trainer)}


def measure_shared(shared: Shared, plan: Plan, timeout: float) -> dict[str, Any]:
    """N packed trials in N processes on one card, released together: images/s of all of them.

    Every wait is bounded by `timeout`; a process that fails or overruns
    fails the row, and every process is ended before this returns."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(folder) / f"trial-{i}" for i in range(shared.trials)]  # its output, errors, ready mark
        go = Path(folder) / "go"
        procs = []
        try:
            for file in files:
                config = {
                    "plan": {**asdict(plan), "rows": ()}, "models": shared.models, "compiled": shared.compiled,
                    "share": 1 / shared.trials, "ready": f"{file}.ready", "go": str(go), "wait": timeout,
                }  # fmt: skip
                with open(f"{file}.out", "w") as out, open(f"{file}.err", "w") as err:  # files: a pipe could fill
                    command = [sys.executable, "-m", "bench.gpu", "trial", json.dumps(config)]
                    procs.append(subprocess.Popen(command, stdout=out, stderr=err, env=env))
            while not all(Path(f"{file}.ready").exists() for file in files):
                for proc, file in zip(procs, files):
                    if proc.poll() is not None:
                        raise RuntimeError(f"a trial process failed before training: {_tail(file)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the trial processes were not ready within {timeout:.0f} s")
                time.sleep(0.05)
            go.touch()
            results = []
            for proc, file in zip(procs, files):
                if proc.wait(timeout=max(1.0, deadline - time.monotonic())) != 0:
                    raise RuntimeError(f"a trial process failed (exit {proc.returncode}): {_tail(file)}")
                results.append(json.loads(Path(f"{file}.out").read_text().strip().splitlines()[-1]))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = sum(r["images"] for r in results) / span
    reserved = [r["reserved_mib"] for r in results if r["reserved_mib"] is not None]
    return {
        "images_per_sec": total,
        "per_model": total / (shared.trials * shared.models),
        "precision": results[0]["precision"],
        "reserved_mib": max(reserved) if reserved else None,
    }


def _tail(file: Path) -> str:
    return Path(f"{file}.err").read_text(errors="replace")[-2000:]


def measure(
    plan: Plan, on_row: Callable[[dict[str, Any], list[Row]], None] = lambda context, rows: None
) -> tuple[dict[str, Any], list[Row]]:
    """The device's description and every row of `plan`, in order, within its budget.

    `on_row(context, rows)` is called before the first row and after each,
    with every row (those to come still 'not measured'), so that a run cut
    short leaves what it measured."""
    began = time.perf_counter()
    device = torch.device(plan.device)
    with exact_float32():
        float32 = matmul_tflops(torch.float32, device, plan.matmul)
    context = {
        "device": describe(device),
        "bfloat16_tflops": matmul_tflops(torch.bfloat16, device, plan.matmul),
        "float32_tflops": float32,
        "flops_per_image": flops_per_image(),
        "plan": {**asdict(plan), "rows": [row.label() for row in plan.rows]},
    }
    rows = [Row(spec.label(), "pack" if isinstance(spec, Pack) else "shared") for spec in plan.rows]
    on_row(context, rows)
    for spec, row in zip(plan.rows, rows):
        spent = time.perf_counter() - began
        if spent > plan.budget:
            row.reason = f"the section's time budget ({plan.budget:.0f} s) was spent"
            continue
        start = time.perf_counter()
        try:
            if isinstance(spec, Pack):
                row.figures = measure_pack(spec, plan)
            else:
                row.figures = measure_shared(spec, plan, timeout=max(60.0, plan.budget - spent))
            row.status, row.reason = "measured", ""
        except Exception as error:  # one row's failure is reported; the others still run
            row.status, row.reason = "failed", f"{type(error).__name__}: {error}"
        row.seconds = time.perf_counter() - start
        print(f"gpu: {row.label}: {row.status} in {row.seconds:.0f} s {row.reason}", file=sys.stderr, flush=True)
        on_row(context, rows)
    context["seconds"] = time.perf_counter() - began
    return context, rows


def describe(device: torch.device) -> str:
    host = f"host CPU {cpu_model()} ({cores()} cores), torch {torch.__version__}"
    if device.type != "cuda":
        return f"CPU smoke run on {host}: the figures mean nothing"
    props = torch.cuda.get_device_properties(device)
    return (
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
        f"CUDA {torch.version.cuda}, {host}"
    )


# -- the section ------------------------------------------------------------------------------


def _mib(value: float | None) -> str:
    return "n/a (CPU)" if value is None else f"{value:.0f} MiB"


def _cells(spec: Pack | Shared, figures: dict[str, Any], flops: float) -> list[str]:
    """A measured row's cells, in its table's columns."""
    rate = figures["images_per_sec"]
    rates = [f"{rate:,.0f}", f"{figures['per_model']:,.0f}", f"{rate * flops / 1e12:.2f}"]
    if isinstance(spec, Pack):
        return [
            str(spec.models), str(spec.compiled).lower(), figures["precision"], *rates,
            f"{figures['step_ms']:.2f} ms", f"{figures['draw_ms']:.2f} ms", _mib(figures["peak_mib"]),
        ]  # fmt: skip
    return [
        str(spec.trials), str(spec.models), str(spec.compiled).lower(), figures["precision"], *rates,
        _mib(figures["reserved_mib"]),
    ]  # fmt: skip


def _table(kind: type, plan: Plan, rows: list[Row], flops: float) -> list[str]:
    """The measured rows of one kind, as Markdown table rows."""
    return [
        "| " + " | ".join(_cells(spec, row.figures, flops)) + " |"
        for spec, row in zip(plan.rows, rows)
        if isinstance(spec, kind) and row.status == "measured"
    ]


def markdown(plan: Plan, context: dict[str, Any], rows: list[Row]) -> str:
    """The section: the device, the goals, the two tables, the rows not measured and why."""
    flops = context["flops_per_image"]
    lines = [
        "## Training on a GPU",
        "",
        f"{context['device']}. {plan.matmul}^3 matrix product: {context['bfloat16_tflops']:.3g} TFLOP/s bfloat16, "
        f"{context['float32_tflops']:.3g} TFLOP/s float32 (IEEE, TF32 off). "
        f"{flops / 1e6:.1f} MFLOP per image forward + backward. One run of each row, no repeats; the rows "
        f"took {context.get('seconds', 0):.0f} s.",
        "",
        f"Goals for packs, not measurements: at least {GOAL:,} images/s per H100 at batch 64 per model; "
        f"moonshot {MOONSHOT:,}.",
        "",
        f"One packed trial (`search.pack_seeds`: the seeds of a configuration as one stacked model) alone on the "
        f"device, batch {plan.batch} per model; after {plan.warmup} warm-up steps, median of {plan.windows} windows "
        f"of {plan.window} steps; images/s of all the pack's models together; draws: the eager `Trainer.draw` "
        "(every model's batches and noise) per step; peak allocated: after the warm-up:",
        "",
        "| models per pack | `compile` | precision | images/s | per model | achieved TFLOP/s | step | draws "
        "| peak allocated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += _table(Pack, plan, rows, flops)
    lines += [
        "",
        f"Several packed trials sharing the device (`gpu: 1/N`, each process capped to 1/N of the memory, one CPU "
        f"thread each), started together and timed over {plan.seconds:.0f} s:",
        "",
        "| packs per device | models per pack | `compile` | precision | total images/s | per model "
        "| achieved TFLOP/s | largest reserved per pack |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += _table(Shared, plan, rows, flops)
    measured = [row for row in rows if row.status == "measured"]
    if measured and plan.device == "cuda":
        best = max(measured, key=lambda row: row.figures["images_per_sec"])
        rate = best.figures["images_per_sec"]
        lines += ["", f"Best row: {best.label}, {rate:,.0f} images/s per device ({rate / GOAL:.0%} of the H100 goal)."]
    missing = [row for row in rows if row.status != "measured"]
    if missing:
        lines += ["", "Not measured:", ""]
        lines += [f"- {row.label}: {row.status}{', ' + row.reason if row.reason else ''}" for row in missing]
    return "\n".join(lines) + "\n"


def failures(rows: list[Row]) -> list[str]:
    return [f"{row.label}: {row.reason}" for row in rows if row.status == "failed"]


def run(quick: bool) -> str:
    """The section for `python -m bench --only gpu`; a failed row stops it, so no wrong figure is written."""
    if not torch.cuda.is_available():
        raise RuntimeError("the gpu section needs a CUDA device")
    plan = replace(GPU_PLAN, warmup=10, window=20, windows=2, seconds=2.0) if quick else GPU_PLAN
    context, rows = measure(plan)
    failed = failures(rows)
    if failed:
        raise RuntimeError("GPU rows failed: " + "; ".join(failed))
    return markdown(plan, context, rows)


def write(path: Path | None, text: str) -> None:
    """Replace `path` whole (a reader never sees half a file)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def section(args: argparse.Namespace) -> int:
    """Measure the plan, writing the section and the rows after every row; 0 when every row was measured,
    1 when one failed, 2 when the budget left rows out."""
    from bench.__main__ import assemble

    plan = SMOKE_PLAN if args.smoke else GPU_PLAN
    if args.budget is not None:
        plan = replace(plan, budget=args.budget)
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("bench.gpu: no CUDA device is visible (use --smoke on a CPU)", file=sys.stderr)
        return 1

    def save(context: dict[str, Any], rows: list[Row]) -> None:
        write(args.section, markdown(plan, context, rows))
        write(args.rows, json.dumps({"context": context, "rows": [asdict(row) for row in rows]}, indent=1))

    context, rows = measure(plan, on_row=save)
    save(context, rows)
    if args.document:
        existing = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
        write(args.document, assemble(existing, {"gpu": markdown(plan, context, rows)}))
    if failures(rows):
        return 1
    return 2 if any(row.status != "measured" for row in rows) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_section = commands.add_parser("section", help="measure the rows, writing files as each finishes")
    run_section.add_argument("--smoke", action="store_true", help="the same code on the CPU at tiny sizes")
    run_section.add_argument("--budget", type=float, help="seconds for the rows (default: the plan's)")
    run_section.add_argument("--section", type=Path, help="write the section's markdown here")
    run_section.add_argument("--rows", type=Path, help="write every row's figures here (JSON)")
    run_section.add_argument("--document", type=Path, help="write docs/benchmarks.md with this section here")
    trial = commands.add_parser("trial", help="one process of a shared-card row (started by the section)")
    trial.add_argument("config", help="the row's settings, JSON")
    args = parser.parse_args(argv)
    if args.command == "trial":
        print(json.dumps(shared_trial(json.loads(args.config))), flush=True)
        return 0
    return section(args)


if __name__ == "__main__":
    raise SystemExit(main())
