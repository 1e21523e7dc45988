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

SINGLE = ((64, True), (64, False), (256, True), (1024, True), (1024, False))  # (batch, bfloat16 autocast)
PACKING = (1, 2, 4, 8, 16)  # trials sharing the card


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


def trial_settings(batch: int, amp: bool) -> TrialSettings:
    return TrialSettings.model_validate({"training": {"batch_size": batch, "device": "cuda", "amp": amp}})


def single_trial(
    batch: int, amp: bool, warmup: int, window: int, windows: int, compiled: str | None = None
) -> tuple[list[float], float]:
    """Images/s of consecutive windows (each ends with the report's host sync), and peak MiB.

    `compiled` (a `torch.compile` mode) wraps the encoder and the decoder (the
    reparameterisation between them draws from the trial's generator, which
    a compiled graph cannot hold).
    """
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(trial_settings(batch, amp), beta=4.0, capacity=0.0, seed=0)
    if compiled:
        trainer.model.encoder = torch.compile(trainer.model.encoder, mode=compiled)
        trainer.model.decoder = torch.compile(trainer.model.decoder, mode=compiled)
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
share, warmup, seconds = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
settings = TrialSettings.model_validate({"training": {"batch_size": 64, "device": "cuda", "threads": 1}})
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


def packed(trials: int, warmup: int, seconds: float) -> dict[str, float]:
    """N trial processes on one card, released together: total and per-trial images/s."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PACKED_SCRIPT, str(1 / trials), str(warmup), str(seconds)],
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
    warmup, window, windows, seconds = (10, 20, 2, 3.0) if quick else (100, 300, 3, 10.0)
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
        "| batch | autocast | images/s | steps/s | achieved TFLOP/s | peak allocated |",
        "|---|---|---|---|---|---|",
    ]
    for batch, amp in SINGLE:
        rates, peak = single_trial(batch, amp, warmup, max(20, window * 64 // batch), windows)
        rate = statistics.median(rates)
        row = (
            f"| {batch} | {'bfloat16' if amp else 'off (float32)'} | {rate:,.0f} | {rate / batch:,.0f} | "
            f"{rate * flops / 1e12:.2f} | {peak:.0f} MiB |"
        )
        print(row, file=sys.stderr, flush=True)
        lines.append(row)
    lines += [
        "",
        f"N trials at batch 64 sharing the card (`gpu: 1/N`, each process capped to 1/N of the memory, one "
        f"CPU thread each), started together and timed over {seconds:.0f} s:",
        "",
        "| trials per GPU | total images/s | per trial | achieved TFLOP/s | largest reserved per trial |",
        "|---|---|---|---|---|",
    ]
    for trials in PACKING:
        if trials > cores():
            continue
        began = time.perf_counter()
        figures = packed(trials, warmup, seconds)
        row = (
            f"| {trials} | {figures['total']:,.0f} | {figures['per_trial']:,.0f} | "
            f"{figures['total'] * flops / 1e12:.2f} | {figures['reserved_mib']:.0f} MiB |"
        )
        print(row, f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
        lines.append(row)
    lines += ["", "`torch.compile` on the encoder and the decoder, batch 64, bfloat16:", ""]
    for mode in ("default", "reduce-overhead"):  # reduce-overhead replays CUDA graphs
        try:
            began = time.perf_counter()
            rates, _ = single_trial(64, True, warmup, window, windows, compiled=mode)
            note = (
                f"{statistics.median(rates):,.0f} images/s (compilation and warm-up "
                f"{time.perf_counter() - began:.0f} s in all)"
            )
        except Exception as error:  # a compiler failure is a finding, not a reason to lose the section
            note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        print(f"compiled, mode {mode}:", note, file=sys.stderr, flush=True)
        lines.append(f"- mode `{mode}`: {note}")
    return "\n".join(lines) + "\n"
