"""GPU training: one trial's step rate, and the card's total rate as trials share it.

A reference beta-VAE step is about 5 GFLOP at batch 64: far too little work to
fill a modern GPU, so one trial is bound by the CPU thread that launches its
kernels. What a sweep gets from a card is the total over the trials packed on
it (`gpu: 1/N` in the config), each capped to its share of memory, so that is
what this section measures, with N processes started together as Ray would
start them. Runs only where CUDA is available; elsewhere the section is kept.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import torch

from bench.machine import cpu_model, cores
from bench.training import flops_per_image
from trainables.settings import TrialSettings
from trainables.trainer import Trainer

# (batch, bfloat16 autocast, training.compile)
SINGLE = ((64, False, False), (64, True, False), (256, False, False), (1024, False, False), (1024, True, False),
          (64, False, True), (64, True, True))
PACKING = {False: (1, 4, 8, 16), True: (4, 8)}  # trials sharing the card, by training.compile


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


def single_trial(
    batch: int, amp: bool, warmup: int, window: int, windows: int, compiled: bool = False
) -> tuple[list[float], float]:
    """Images/s of consecutive windows (each ends with the report's host sync), and peak MiB."""
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(trial_settings(batch, amp, compiled), beta=4.0, capacity=0.0, seed=0)
    trainer.train(warmup)
    rates = [trainer.train(window)["images_per_sec"] for _ in range(windows)]
    peak = torch.cuda.max_memory_allocated() / 2**20
    del trainer
    torch.cuda.empty_cache()
    return rates, peak


_PACKED_SCRIPT = """
import json, sys, time, torch
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
share, warmup, seconds, compiled = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
training = {"batch_size": 64, "device": "cuda", "threads": 1, "compile": compiled}
settings = TrialSettings.model_validate({"training": training})
trainer = Trainer(settings, beta=4.0, capacity=0.0, seed=0, gpu_share=share)
trainer.train(warmup)
print("ready", flush=True)
sys.stdin.readline()
start, images = time.time(), 0
while time.time() - start < seconds:
    trainer.train(50)  # the report at its end waits for the GPU
    images += 50 * 64
print(json.dumps({"start": start, "end": time.time(), "images": images,
                  "reserved_mib": torch.cuda.max_memory_reserved() / 2**20}), flush=True)
"""


def packed(trials: int, warmup: int, seconds: float, compiled: bool) -> dict[str, float]:
    """N trial processes on one card, released together: total and per-trial images/s."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PACKED_SCRIPT, str(1 / trials), str(warmup), str(seconds), str(int(compiled))],
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
    return "\n".join(lines) + "\n"
