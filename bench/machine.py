"""The machine a benchmark ran on, and how fast it multiplies matrices right now.

Shared 2-core machines drift in speed, so every timed section states the
float32 matmul rate measured in the same process next to its own figures.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_extensions() -> str:
    """The CPU's widest vector and matrix instruction sets: the same model name can hide
    machines whose convolution kernels differ by a factor of two."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
    return ", ".join(f for f in wanted if f in flags) or "none of AVX2, AVX-512, AMX"


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def median_seconds(fn: Callable[[], object], runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of `runs` calls of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(size: int = 2048, runs: int = 7) -> float:
    """float32 size x size matmul rate in GFLOP/s with torch's current threads, median of `runs`."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    seconds = median_seconds(lambda: torch.matmul(a, b, out=out), runs=runs, warmup=2)
    return 2 * size**3 / seconds / 1e9


def describe() -> dict[str, str]:
    """What a reader needs to put the figures in context."""
    return {
        "CPU": cpu_model(),
        "vector extensions": vector_extensions(),
        "cores available": str(cores()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": _package_version("scikit-learn"),
        "CUDA": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def header_markdown(gflops: float | None = None) -> str:
    """The machine section: a table of `describe()` and the matmul rate."""
    rows = describe()
    if gflops is None:
        gflops = matmul_gflops()
    rows["float32 2048x2048 matmul"] = f"{gflops:.0f} GFLOP/s (median of 7)"
    lines = ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines) + "\n"
