"""GPU training: one trial's step rate, the card's total rate as trials share it, and packs.

A reference beta-VAE step is about 5 GFLOP at batch 64: far too little work to
fill a modern GPU, so one trial is bound by the CPU thread that launches its
kernels. What a sweep gets from a card is the total over the trials packed on
it (`gpu: 1/N` in the config), each capped to its share of memory, so that is
what this section measures, with N processes started together as Ray would
start them. A packed trial (`search.pack_seeds`) trains S seeds as one
stacked model, S models for about the kernels of one: measured for S from 1
to 40, with and without `compile` and bfloat16, and several packs per card.
Runs only where CUDA is available; elsewhere the section is kept.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from bench.machine import cores, cpu_model
from bench.training import flops_per_image
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration

# (batch, bfloat16 autocast, training.compile)
SINGLE = ((64, False, False), (64, True, False), (256, False, False), (1024, False, False), (1024, True, False),
          (64, False, True), (64, True, True))
PACKING = {False: (1, 4, 8, 16), True: (4, 8)}  # trials sharing the card, by training.compile
PACK_SIZES = (1, 5, 10, 20, 40)  # models per packed trial, batch 64 each
PACK_MODES = ((False, False), (True, False), (False, True), (True, True))  # (compile, bfloat16 autocast)
PACKS_PER_CARD = ((2, 20), (4, 10), (4, 20))  # (packed trials sharing the card, models per pack), compiled
BETA_4 = Configuration.of("beta_vae", {"beta": 4.0})


def matmul_tflops(dtype: torch.dtype, size: int = 8192, runs: int = 10) -> float:
    """Rate of a size^3 matrix product on random data, median of `runs`, timed with CUDA events."""
    generator = torch.Generator("cuda").manual_seed(0)
    a = torch.randn(size, size, device="cuda", dtype=dtype, generator=generator)
    b = torch.randn(size, size, device="cuda", dtype=dtype, generator=generator)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(runs):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / 1e3)
    return 2 * size**3 / statistics.median(times) / 1e12


def trial_settings(batch: int, amp: bool, compiled: bool = False) -> TrialSettings:
    training = {"batch_size": batch, "device": "cuda", "amp": amp, "compile": compiled, "threads": 1}
    return TrialSettings.model_validate({"training": training})


def steady_rates(
    make: Callable[[], Trainer], warmup: int, window: int, windows: int
) -> tuple[list[float], float]:
    """Images/s of consecutive windows (each ends with the report's host sync), and peak MiB.

    For a pack, the images of all its models together."""
    torch.cuda.reset_peak_memory_stats()
    trainer = make()
    trainer.train(warmup)
    rates = []
    for _ in range(windows):
        report = trainer.train(window)
        rates.append(report.images_per_sec)
    peak = torch.cuda.max_memory_allocated() / 2**20
    del trainer
    torch.cuda.empty_cache()
    return rates, peak


def single_trial(
    batch: int, amp: bool, warmup: int, window: int, windows: int, compiled: bool = False
) -> tuple[list[float], float]:
    settings = trial_settings(batch, amp, compiled)
    return steady_rates(lambda: Trainer(settings, BETA_4, seeds=(0,)), warmup, window, windows)


def one_pack(
    models: int, amp: bool, compiled: bool, warmup: int, window: int, windows: int
) -> tuple[list[float], float]:
    settings = trial_settings(64, amp, compiled)
    return steady_rates(lambda: Trainer(settings, BETA_4, range(models)), warmup, window, windows)


_PACKED_SCRIPT = """
import json, sys, time, torch
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration
share, warmup, seconds, compiled = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
models = int(sys.argv[5])  # the seeds each trial trains as one stacked model
training = {"batch_size": 64, "device": "cuda", "threads": 1, "compile": compiled}
settings = TrialSettings.model_validate({"training": training})
trainer = Trainer(settings, Configuration.of("beta_vae", {"beta": 4.0}), seeds=range(models), gpu_share=share)
trainer.train(warmup)
print("ready", flush=True)
sys.stdin.readline()
start, images = time.time(), 0
while time.time() - start < seconds:
    trainer.train(50)  # the report at its end waits for the GPU
    images += 50 * 64 * models
print(json.dumps({"start": start, "end": time.time(), "images": images,
                  "reserved_mib": torch.cuda.max_memory_reserved() / 2**20}), flush=True)
"""


def packed(trials: int, warmup: int, seconds: float, compiled: bool, models: int = 1) -> dict[str, float]:
    """N trial processes on one card, released together: total and per-trial images/s.

    `models`: the seeds each trial trains as one stacked model."""
    args = [str(1 / trials), str(warmup), str(seconds), str(int(compiled)), str(models)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PACKED_SCRIPT, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(trials)
    ]
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a packed trial failed before training (exit {proc.wait()})")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.stdout.readline()) for proc in procs]
    for proc in procs:
        proc.wait()
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = sum(r["images"] for r in results) / span
    return {
        "total": total,
        "per_trial": total / trials,
        "reserved_mib": max(r["reserved_mib"] for r in results),
    }


def run(quick: bool) -> str:
    if not torch.cuda.is_available():
        raise RuntimeError("the gpu section needs a CUDA device")
    warmup, window, windows, seconds = (10, 20, 2, 3.0) if quick else (100, 300, 3, 8.0)
    props = torch.cuda.get_device_properties(0)
    bf16 = matmul_tflops(torch.bfloat16)
    fp32 = matmul_tflops(torch.float32)
    flops = flops_per_image()
    lines = [
        "## Training on a GPU",
        "",
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
        f"CUDA {torch.version.cuda}, torch {torch.__version__}, host CPU {cpu_model()} ({cores()} cores). "
        f"8192^3 matrix product: {bf16:.0f} TFLOP/s bfloat16, {fp32:.0f} TFLOP/s float32 "
        f"(TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}). "
        f"{flops / 1e6:.1f} MFLOP per image forward + backward."
        f"{' Quick run: not representative.' if quick else ''}",
        "",
        "One trial, the project's `Trainer` (cudnn.benchmark on), after "
        f"{warmup} warm-up steps; median of {windows} windows of about {window * 64:,} images:",
        "",
        "| batch | autocast | `compile` | images/s | steps/s | achieved TFLOP/s | peak allocated |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch, amp, compiled in SINGLE:
        rates, peak = single_trial(batch, amp, warmup, max(20, window * 64 // batch), windows, compiled)
        rate = statistics.median(rates)
        row = (
            f"| {batch} | {'bfloat16' if amp else 'off (float32)'} | {str(compiled).lower()} | {rate:,.0f} | "
            f"{rate / batch:,.0f} | {rate * flops / 1e12:.2f} | {peak:.0f} MiB |"
        )
        print(row, file=sys.stderr, flush=True)
        lines.append(row)
    lines += [
        "",
        f"N trials at batch 64, float32, sharing the card (`gpu: 1/N`, each process capped to 1/N of the memory, "
        f"one CPU thread each), started together and timed over {seconds:.0f} s:",
        "",
        "| trials per GPU | `compile` | total images/s | per trial | achieved TFLOP/s | largest reserved per trial |",
        "|---|---|---|---|---|---|",
    ]
    for compiled, counts in PACKING.items():
        for trials in counts:
            if trials > cores():
                continue
            began = time.perf_counter()
            figures = packed(trials, warmup, seconds, compiled)
            row = (
                f"| {trials} | {str(compiled).lower()} | {figures['total']:,.0f} | {figures['per_trial']:,.0f} | "
                f"{figures['total'] * flops / 1e12:.2f} | {figures['reserved_mib']:.0f} MiB |"
            )
            print(row, f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
            lines.append(row)
    lines += [
        "",
        "One packed trial (`search.pack_seeds`: the seeds of a configuration as one stacked model), batch 64 per "
        f"model, the whole card; after {warmup} warm-up steps, median of {windows} windows of {window} steps; "
        "images/s of all the pack's models together:",
        "",
        "| models per pack | `compile` | autocast | images/s per card | per model | achieved TFLOP/s "
        "| peak allocated |",
        "|---|---|---|---|---|---|---|",
    ]
    for compiled, amp in PACK_MODES:
        for models in PACK_SIZES:
            began = time.perf_counter()
            rates, peak = one_pack(models, amp, compiled, warmup, window, windows)
            rate = statistics.median(rates)
            row = (
                f"| {models} | {str(compiled).lower()} | {'bfloat16' if amp else 'off (float32)'} | {rate:,.0f} | "
                f"{rate / models:,.0f} | {rate * flops / 1e12:.2f} | {peak:.0f} MiB |"
            )
            print(row, f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
            lines.append(row)
    lines += [
        "",
        f"Several packed trials sharing the card (`gpu: 1/N`, each capped to 1/N of the memory), compiled, float32, "
        f"started together and timed over {seconds:.0f} s:",
        "",
        "| packs per GPU | models per pack | total images/s | per model | achieved TFLOP/s "
        "| largest reserved per pack |",
        "|---|---|---|---|---|---|",
    ]
    for trials, models in PACKS_PER_CARD:
        if trials > cores():
            continue
        began = time.perf_counter()
        figures = packed(trials, warmup, seconds, True, models)
        row = (
            f"| {trials} | {models} | {figures['total']:,.0f} | {figures['total'] / (trials * models):,.0f} | "
            f"{figures['total'] * flops / 1e12:.2f} | {figures['reserved_mib']:.0f} MiB |"
        )
        print(row, f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
        lines.append(row)
    return "\n".join(lines) + "\n"
