"""Training speed and memory: images/s, achieved GFLOP/s against the matmul rate, peak RSS,
the trainer with one model against a plain PyTorch loop, and a pack of seeds trained as one
stacked model against as many trials of one model.

The step is measured with the project's own `Trainer` (the code a trial
runs), after a warm-up long enough for denormal floats to appear in the
convolution backward pass, so the figure is the steady state of a long
training and not its fast first minute. FLOPs per image are counted once with
`torch.utils.flop_counter` on the trainer's forward and backward pass.
Comparisons are measured in one process, in alternating windows, so that load
from elsewhere on the machine falls on both sides.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.machine import matmul_gflops
from trainables.model import BetaVAE
from trainables.objectives.beta_vae import BetaVAE as BetaVAEObjective
from trainables.settings import TrialSettings
from trainables.stacked import StackedBetaVAE
from trainables.trainer import Trainer
from trainables.trial import Configuration

BATCH = 64
LARGE_BATCH = 256  # above glibc's largest mmap threshold per activation buffer: the page-fault case
PACK = 5
BETA_4 = Configuration.of("beta_vae", {"beta": 4.0})
STUDY = {  # one configuration of each of the study's objectives
    "beta_vae": BETA_4,
    "annealed_vae": Configuration.of("annealed_vae", {"gamma": 1000.0, "c_max": 25.0}),
    "factor_vae": Configuration.of("factor_vae", {"gamma": 10.0}),
    "dip_vae_i": Configuration.of("dip_vae_i", {"lambda_od": 5.0}),
    "dip_vae_ii": Configuration.of("dip_vae_ii", {"lambda_od": 5.0}),
    "beta_tcvae": Configuration.of("beta_tcvae", {"beta": 6.0}),
}

GPU_POINTER = (
    "GPU figures are in the section 'Training on a GPU' (`python -m bench --only gpu` on a machine with CUDA)."
)


def flops_per_image(batch: int = BATCH) -> float:
    """Forward + backward FLOPs of one training step of one model, per image."""
    model = StackedBetaVAE([BetaVAE(10)])
    x = torch.zeros(batch, 1, 1, 64, 64)
    with FlopCounterMode(display=False) as counter:
        logits, mu, logvar, z = model(x, torch.zeros(1, batch, 10))
        BetaVAEObjective(beta=4.0).terms(x, logits, mu, logvar, z, step=0).loss.sum().backward()
    return counter.get_total_flops() / batch


def settings_for(batch: int, threads: int) -> TrialSettings:
    return TrialSettings.model_validate({"training": {"batch_size": batch, "threads": threads}})


def images_per_second(threads: int, warmup_steps: int, window_steps: int, windows: int) -> list[float]:
    """Images/s of consecutive windows after `warmup_steps`, from the trainer's own reports."""
    trainer = Trainer(settings_for(BATCH, threads), BETA_4, seeds=(0,))
    trainer.train(warmup_steps)
    return [trainer.train(window_steps).images_per_sec for _ in range(windows)]


def large_batch(threads: int, warmup: int, window: int, windows: int) -> tuple[list[float], float]:
    """Images/s of windows at LARGE_BATCH, and the minor page faults per step over them."""
    trainer = Trainer(settings_for(LARGE_BATCH, threads), BETA_4, seeds=(0,))
    trainer.train(warmup)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    rates = [trainer.train(window).images_per_sec for _ in range(windows)]
    return rates, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (window * windows)


class PlainLoop:
    """The floor a trainer of one model is held to: the same `BetaVAE`, the loss written out, Adam,
    nothing else. Its batches are rendered once beforehand and cycled, so the trainer alone pays for
    drawing its data."""

    def __init__(self, dataset: object, batches: int = 8, beta: float = 4.0) -> None:
        torch.manual_seed(0)
        self.model = BetaVAE(10)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        rng = torch.Generator().manual_seed(0)
        self.batches = [dataset.observations(dataset.sample_factors_torch(BATCH, rng)) for _ in range(batches)]
        self.beta = beta

    def train(self, steps: int) -> float:
        """Images/s over `steps` steps."""
        start = time.perf_counter()
        for step in range(steps):
            x = self.batches[step % len(self.batches)]
            logits, mu, logvar = self.model(x)
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / BATCH
            kl = 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(dim=1).mean()
            self.optimizer.zero_grad(set_to_none=True)
            (recon + self.beta * kl).backward()
            self.optimizer.step()
        return steps * BATCH / (time.perf_counter() - start)


def timed_rate(trainer: Trainer, steps: int) -> float:
    """Images/s of `steps` steps, every model's, timed around the call: a report's own rate counts from
    the report before it, which in alternating windows includes the other side's window."""
    start = time.perf_counter()
    trainer.train(steps)
    return steps * trainer.settings.training.batch_size * len(trainer.seeds) / (time.perf_counter() - start)


def one_against_plain_loop(threads: int, warmup: int, window: int, windows: int) -> tuple[list[float], list[float]]:
    """Images/s of the trainer with one model and of `PlainLoop`, window by window."""
    trainer = Trainer(settings_for(BATCH, threads), BETA_4, seeds=(0,))
    plain = PlainLoop(trainer.dataset)
    trainer.train(warmup)
    plain.train(warmup)
    ours, floor = [], []
    for _ in range(windows):
        ours.append(timed_rate(trainer, window))
        floor.append(plain.train(window))
    return ours, floor


def pack_against_singles(threads: int, warmup: int, window: int, windows: int) -> tuple[list[float], list[float]]:
    """Images/s per model of a pack of PACK seeds and of PACK trials of one model trained in turn, window by window."""
    settings = settings_for(BATCH, threads)
    pack = Trainer(settings, BETA_4, seeds=range(PACK))
    singles = [Trainer(settings, BETA_4, seeds=(seed,)) for seed in range(PACK)]
    pack.train(warmup)
    for trainer in singles:
        trainer.train(warmup)
    packed, single = [], []
    for _ in range(windows):
        packed.append(timed_rate(pack, window) / PACK)
        start = time.perf_counter()
        for trainer in singles:
            trainer.train(window)
        single.append(window * BATCH / (time.perf_counter() - start))  # PACK models' images / time / PACK
    return packed, single


def objective_rates(threads: int, warmup: int, window: int, windows: int) -> dict[str, list[float]]:
    """Images/s per model of a pack of PACK seeds for each of the study's objectives, window by window in
    turn, so that load from elsewhere falls on every objective alike."""
    settings = settings_for(BATCH, threads)
    packs = {kind: Trainer(settings, configuration, seeds=range(PACK)) for kind, configuration in STUDY.items()}
    for pack in packs.values():
        pack.train(warmup)
    rates: dict[str, list[float]] = {kind: [] for kind in packs}
    for _ in range(windows):
        for kind, pack in packs.items():
            rates[kind].append(timed_rate(pack, window) / PACK)
    return rates


_PEAK_SCRIPT = """
import json, resource, sys, torch
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
settings = TrialSettings.model_validate({"training": {"batch_size": %d, "threads": 1}})
from trainables.trial import Configuration
trainer = Trainer(settings, Configuration.of("beta_vae", {"beta": 4.0}), seeds=(0,))
trainer.train(%d)
print(json.dumps({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def peak_memory_mib(steps: int) -> float:
    """Peak resident memory of a fresh process that imports, renders the dataset and trains."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT % (BATCH, steps)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kib"] / 1024


def run(quick: bool) -> str:
    threads = torch.get_num_threads()
    warmup, window, windows = (20, 20, 2) if quick else (300, 100, 3)
    flops = flops_per_image()
    matmul_before = matmul_gflops()
    rates = images_per_second(threads, warmup, window, windows)
    matmul_after = matmul_gflops()
    rate = statistics.median(rates)
    achieved = rate * flops / 1e9
    matmul = statistics.mean([matmul_before, matmul_after])
    peak = peak_memory_mib(20 if quick else 200)
    large, faults = large_batch(threads, 5 if quick else 20, 10 if quick else 20, windows)
    pack_warmup, pack_window = (5, 10) if quick else (50, 50)
    plain_windows = 2 if quick else 7
    ours, floor = one_against_plain_loop(threads, warmup, window, plain_windows)
    packed, single = pack_against_singles(threads, pack_warmup, pack_window, windows)
    by_objective = objective_rates(threads, pack_warmup, pack_window, windows)
    lines = [
        "## Training step (CPU)",
        "",
        f"The reference 10-latent beta-VAE, batch {BATCH}, Adam, on the procedural dSprites; "
        f"{threads} torch threads; {warmup} warm-up steps, then the median of {windows} windows of "
        f"{window} steps{' (quick run: not representative)' if quick else ''}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| FLOPs per image (forward + backward, `torch.utils.flop_counter`) | {flops / 1e6:.1f} MFLOP |",
        f"| training throughput | {rate:.0f} images/s (windows: {', '.join(f'{r:.0f}' for r in rates)}) |",
        f"| achieved | {achieved:.1f} GFLOP/s |",
        f"| float32 2048x2048 matmul, same process (before / after) | "
        f"{matmul_before:.0f} / {matmul_after:.0f} GFLOP/s |",
        f"| fraction of the matmul rate | {achieved / matmul:.1%} |",
        f"| peak memory of one training process ({20 if quick else 200} steps, 1 thread) | {peak:.0f} MiB |",
        f"| batch {LARGE_BATCH} | {statistics.median(large):.0f} images/s "
        f"(windows: {', '.join(f'{r:.0f}' for r in large)}), {faults:.1f} minor page faults per step |",
        "",
        f"The trainer with one model (S = 1, the stack of one) against a plain PyTorch loop over the same `BetaVAE` "
        f"(the loss written out, Adam, nothing else; its batches rendered beforehand, so only the trainer draws "
        f"data in the timed windows), batch {BATCH}, {threads} torch threads; {warmup} warm-up steps each, then "
        f"{plain_windows} alternating windows of {window} steps:",
        "",
        "| loop | images/s (median) | windows |",
        "|---|---|---|",
        f"| `Trainer`, one model | {statistics.median(ours):.0f} | {', '.join(f'{r:.0f}' for r in ours)} |",
        f"| plain PyTorch loop | {statistics.median(floor):.0f} | {', '.join(f'{r:.0f}' for r in floor)} |",
        "",
        f"In this run the trainer ran at {statistics.median(ours) / statistics.median(floor):.1%} of the plain "
        "loop's rate.",
        "",
        f"A pack of {PACK} seeds trained as one stacked model (`search.pack_seeds`) against {PACK} trials of one "
        f"model trained in turn in the same process, batch {BATCH} per model, {threads} torch threads; {pack_warmup} "
        f"warm-up steps each, then {windows} alternating windows of {pack_window} steps; images/s per model:",
        "",
        "| trials | images/s per model (median) | windows |",
        "|---|---|---|",
        f"| pack of {PACK} | {statistics.median(packed):.0f} | {', '.join(f'{r:.0f}' for r in packed)} |",
        f"| {PACK} trials of one model | {statistics.median(single):.0f} | {', '.join(f'{r:.0f}' for r in single)} |",
        "",
        f"In this run a packed model trained at {statistics.median(packed) / statistics.median(single):.0%} of a "
        "trial of one model's rate. A pack is for GPUs, where one model's kernels are too small to fill the card; on a "
        "CPU the step is arithmetic, which stacking does not remove.",
        "",
        f"Each of the study's objectives, a pack of {PACK} seeds, batch {BATCH} per model, {threads} torch threads; "
        f"{pack_warmup} warm-up steps, then {windows} windows of {pack_window} steps taken in turn across the "
        "objectives; images/s per model:",
        "",
        "| objective | images/s per model (median) | windows |",
        "|---|---|---|",
        *(f"| {kind} | {statistics.median(r):.0f} | {', '.join(f'{x:.0f}' for x in r)} |" for kind, r in by_objective.items()),
        "",
        GPU_POINTER,
    ]
    return "\n".join(lines) + "\n"
