"""One beta-VAE training run, independent of Ray so it can be tested and benchmarked alone.

The hot loop keeps everything on the device: factors are drawn with a torch
generator, batches are rendered by indexing, and the loss terms accumulate
into device tensors that are read back once per report, so the step itself
never waits on the host.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from trainables.checkpoint import load_state, load_weights, save_checkpoint
from trainables.data import GroundTruthData, StoredImages, make_dataset, unsupported_metrics
from trainables.model import BetaVAE, compiled_view
from trainables.objective import beta_vae_loss, capacity_at
from trainables.runtime import configure_process, resolve_device
from trainables.settings import DataSettings, TrialSettings

ACTIVE_KL_THRESHOLD = 0.01  # nats; a latent below it carries no information (as in UDR)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial cannot continue."""


def model_report(means: list[float], kl_per_latent: list[float], capacity: float) -> dict[str, float]:
    """One model's report from its means over a window: `means` are loss, recon and kl."""
    report = {
        "loss": means[0],
        "recon": means[1],
        "kl": means[2],
        "capacity": capacity,
        "active_latents": float(sum(v > ACTIVE_KL_THRESHOLD for v in kl_per_latent)),
    }
    report.update({f"kl/{i}": v for i, v in enumerate(kl_per_latent)})
    return report


def non_finite_reason(step: int, beta: float, capacity_max: float, seed: int, means: list[float]) -> str:
    """Why a model stopped: its step, its values and its window's means of loss, recon and kl."""
    return (
        f"non-finite loss at step {step} (beta={beta}, C_max={capacity_max}, seed={seed}): "
        f"loss={means[0]}, recon={means[1]}, kl={means[2]}"
    )


_DATASETS: dict[tuple[DataSettings, str], GroundTruthData] = {}


def shared_dataset(settings: DataSettings, device: str, stored: StoredImages | None = None) -> GroundTruthData:
    """One dataset per worker process, settings and device, reused by every trial the process runs.

    `stored` is the file's content from Ray's object store (zero-copy on the
    CPU); without it a file-backed dataset is read from its file. On a GPU the
    packed images are copied there once per process, not once per trial.
    """
    key = (settings, device)
    if key not in _DATASETS:
        if len(_DATASETS) >= 2:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = make_dataset(settings, device, stored)
    return _DATASETS[key]


class Trainer:
    def __init__(
        self,
        settings: TrialSettings,
        beta: float,
        capacity: float,
        seed: int,
        stored: StoredImages | None = None,
        gpu_share: float | None = None,
    ) -> None:
        self.settings = settings
        self.beta = float(beta)
        self.capacity_max = float(capacity)
        self.seed = int(seed)
        training = settings.training
        self.device = resolve_device(training.device)
        configure_process(self.device, training.threads, gpu_share)

        torch.manual_seed(self.seed)
        self.dataset = shared_dataset(settings.data, str(self.device), stored)
        problem = unsupported_metrics(self.dataset, settings.eval.metrics)
        if problem:
            raise ValueError(problem)
        self.model = BetaVAE(settings.model.latent_dim, channels=self.dataset.image_shape[0]).to(self.device)
        # On a GPU one step is a few hundred tiny kernels; CUDA graphs replay them as one launch each.
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self._step_model = compiled_view(self.model, mode) if training.compile else self.model
        # Fused Adam on a GPU: one kernel for every parameter instead of a dozen launches per step.
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=training.lr, betas=(0.9, 0.999), eps=1e-8,
            fused=self.device.type == "cuda",
        )
        # One generator for the data and the reparameterisation noise: the trial's whole randomness.
        self.generator = torch.Generator(self.device).manual_seed(self.seed)
        self.use_amp = training.amp and self.device.type == "cuda"
        self._graphs = training.compile and self.device.type == "cuda"
        self.step = 0
        self._reset_window()

    # -- training -------------------------------------------------------------------------
    def _reset_window(self) -> None:
        d = self.settings.model.latent_dim
        self._sums = torch.zeros(3, device=self.device)  # loss, recon, kl
        self._kl_sums = torch.zeros(d, device=self.device)
        self._window_steps = 0
        self._window_start = time.perf_counter()

    def capacity(self) -> float:
        return capacity_at(self.step, self.capacity_max, self.settings.objective.capacity_steps)

    def train_step(self) -> None:
        batch_size = self.settings.training.batch_size
        factors = self.dataset.sample_factors_torch(batch_size, self.generator)
        x = self.dataset.observations(factors, self.generator)
        if self._graphs:  # a new iteration: the last step's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            logits, mu, logvar = self._step_model(x, self.generator)
        terms = beta_vae_loss(logits, x, mu, logvar, self.beta, self.capacity())
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self._sums += torch.stack((terms.loss, terms.recon, terms.kl)).detach()
            self._kl_sums += terms.kl_per_latent.detach()
        self._window_steps += 1
        self.step += 1

    def train(self, steps: int) -> dict[str, float]:
        """Run `steps` steps and return the means over them, as a report."""
        for _ in range(steps):
            self.train_step()
        return self.window_report()

    def window_report(self) -> dict[str, float]:
        """Means since the last report; raises if the loss went non-finite on the way."""
        n = max(self._window_steps, 1)
        sums = (self._sums / n).cpu().tolist()
        per_latent = (self._kl_sums / n).cpu().tolist()
        elapsed = time.perf_counter() - self._window_start
        images = self._window_steps * self.settings.training.batch_size
        if not all(math.isfinite(v) for v in sums + per_latent):
            raise NonFiniteLossError(non_finite_reason(self.step, self.beta, self.capacity_max, self.seed, sums))
        report = model_report(sums, per_latent, self.capacity())
        report["images_per_sec"] = images / elapsed if elapsed > 0 else 0.0
        self._reset_window()
        return report

    # -- checkpoints ----------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        state = {
            "step": self.step,
            "beta": self.beta,
            "capacity_max": self.capacity_max,
            "seed": self.seed,
            "optimizer": self.optimizer.state_dict(),
            "rng": self.generator.get_state(),
        }
        save_checkpoint(folder, self.model.state_dict(), state)

    def load(self, folder: str | Path) -> None:
        state = load_state(folder)
        saved = (state["beta"], state["capacity_max"], state["seed"])
        if saved != (self.beta, self.capacity_max, self.seed):
            raise ValueError(
                f"checkpoint {folder} belongs to beta={saved[0]}, C_max={saved[1]}, seed={saved[2]}, "
                f"not to this trial's beta={self.beta}, C_max={self.capacity_max}, seed={self.seed}"
            )
        self.model.load_state_dict(load_weights(folder, self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["rng"])
        self.step = int(state["step"])
        self._reset_window()

    def eval_rng(self) -> np.random.Generator:
        """A fresh generator per (seed, step): evaluations repeat exactly after a resume."""
        return np.random.default_rng([self.seed, self.step])
