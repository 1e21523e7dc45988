"""The process-wide tuning a training process needs, and the device a trial runs on.

Ray runs many trials one after another in one worker process, and several
trainers (a single trial, a pack, a benchmark's comparison) may share it. What
belongs to the process (the allocator, denormals, cuDNN's autotuner) is set
once; what belongs to a trial (its torch threads, its share of a GPU's memory,
its TF32 setting) is set again by every trial, because the one before may have
set other values.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4

_configured = False
_default_threads: int | None = None  # the process's torch threads before any trial set its own


def keep_freed_memory() -> None:
    """Serve every allocation from the heap and never hand freed memory back to the kernel.

    glibc mmap-s a block above its mmap threshold and unmaps it when freed, so
    a step whose activations are such blocks faults all their pages in again on
    every step. The threshold adapts up to 32 MiB only, and one convolution
    output at batch 256 (or a pack of models at batch 64) is larger: measured,
    68,000 page faults per step at batch 256 (34% fewer images/s than at batch
    64) and 195,000 for a pack of 5 at batch 64. No mmap at all (`M_MMAP_MAX = 0`; glibc falls back to mmap only
    when the heap cannot grow) and no trimming keep those pages for the next
    step whatever the batch and pack size: under 1 fault per step for both once
    the heap has grown to the step's peak. The process's
    memory stays at its step's peak, which a training process reaches anyway.
    Not glibc (musl, macOS): nothing to do.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        return


def resolve_device(requested: str) -> torch.device:
    """`auto` means the GPU Ray assigned to this trial if any, else the CPU."""
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("training.device is 'cuda' but no CUDA device is visible to this trial")
        # With an index: memory caps and statistics refuse a bare "cuda". Ray makes the trial's
        # GPU the only visible one, so the current device is the assigned one.
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def cap_gpu_memory(device: torch.device, share: float | None) -> None:
    """Hold a trial to its share of the GPU's memory (a whole card when `share` is None or 1).

    Ray's GPU fractions are bookkeeping only: four trials of `gpu: 0.25` share
    one card with nothing to stop one of them from taking all its memory, so
    that the others fail with out-of-memory errors. PyTorch's caching
    allocator can enforce the share within the process instead. Set on every
    call: a trial with a whole card after a quarter-card one in the same
    process must not keep the quarter.
    """
    if device.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(share if share is not None and 0 < share < 1 else 1.0, device)


# `training.tf32` -> whether cuDNN's convolutions and cuBLAS's matrix products may run float32 in TF32.
TF32_FLAGS = {"off": (False, False), "convolutions": (True, False), "all": (True, True)}


def set_tf32(mode: str) -> None:
    """Set both of PyTorch's TF32 switches from `training.tf32`.

    PyTorch's defaults differ by operation (convolutions in TF32, matrix
    products not), and a process keeps whatever the last trial or library
    set, so a trial sets both rather than inherit them. Float32 on an Ampere
    or later GPU then means what the setting says; a CPU ignores the switches.
    """
    if mode not in TF32_FLAGS:
        raise ValueError(f"training.tf32 = {mode!r}: must be one of {', '.join(TF32_FLAGS)}")
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = TF32_FLAGS[mode]


def tf32_mode() -> str:
    """Which float32 operations run in TF32 now, read back from PyTorch: what a benchmark row reports."""
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    return next((mode for mode, wanted in TF32_FLAGS.items() if wanted == flags), "matrix products only")


@contextmanager
def exact_float32() -> Iterator[None]:
    """IEEE float32 inside (no TF32 anywhere), the switches as they were afterwards."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def configure_process(
    device: torch.device, threads: int | None, gpu_share: float | None = None, tf32: str = "convolutions"
) -> None:
    """Tune this process for training on `device`; call it at the start of every trial.

    `threads`: the trial's torch threads; None restores what the process had
    before any trial set them (Ray sets OMP_NUM_THREADS to the trial's CPUs).
    `tf32`: the trial's `training.tf32`.
    """
    global _configured, _default_threads
    if not _configured:
        _default_threads = torch.get_num_threads()
        keep_freed_memory()
        # Denormals appear in the conv backward pass as training goes on and slow it by half.
        torch.set_flush_denormal(True)
        # Fixed input shapes: let cuDNN pick the fastest convolution algorithms once.
        torch.backends.cudnn.benchmark = True
        _configured = True
    wanted = threads or _default_threads
    if wanted and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    set_tf32(tf32)
    cap_gpu_memory(device, gpu_share)
