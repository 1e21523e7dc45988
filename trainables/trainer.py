"""The one trainer: S >= 1 models of one configuration, trained as one stacked model.

A configuration is one of the study's objectives with its weights
(`trainables.objectives`); the trainer calls every objective the same way.

Every trial runs this code, whether it trains one seed or a configuration's
seeds together (`search.pack_seeds`); a trial of one seed is S = 1, whose
stack runs plain convolutions (groups = 1). The contract that makes stacking
safe: each model of the stack is the model the same code would train alone
with its seed. Its initial weights are drawn as a lone model's
(`torch.manual_seed(seed)`, then `BetaVAE`), and its batches and noise come
from its own generator seeded with its seed, drawn outside the stacked
forward in one fixed order (factors, the observations' randomness, noise).
The loss is the sum of the models' losses, so each slice's gradient is its
own model's; Adam is per element, so one optimizer over the stack steps each
slice as the model's own Adam would.

The hot loop keeps everything on the device: batches are rendered by
indexing and the loss terms accumulate into device tensors read back once
per report, so the step never waits on the host. A model whose loss goes
non-finite is found at the next report and fails alone: its gradients are
zeroed and its Adam moments cleared from then on, so its slice stays still
while its seed-mates train on.

A checkpoint is one folder per model (`trainables.trial.model_folder`), each
a complete checkpoint of that model alone, so that export, UDR and a trial
of another pack size read one model without the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables import stacked_adam
from trainables.checkpoint import (
    WEIGHTS_FILE,
    check_identity,
    load_state,
    load_weights,
    save_checkpoint,
    saved_identity,
)
from trainables.data import GroundTruthData, StoredImages, make_dataset, unsupported_metrics
from trainables.evaluate import evaluate
from trainables.model import BetaVAE
from trainables.objectives import make_objective
from trainables.objectives.base import ACTIVE_KL_THRESHOLD
from trainables.report import TrialReport
from trainables.runtime import configure_process, resolve_device
from trainables.settings import DataSettings, TrialSettings
from trainables.stacked import StackedBetaVAE
from trainables.trial import Configuration, model_folder


class NonFiniteLossError(RuntimeError):
    """Every model of the trial went NaN or infinite; the trial cannot continue."""


def model_report(means: list[float], kl_per_latent: list[float], extra: dict[str, float]) -> dict[str, float]:
    """One model's report from its means over a window: `means` are loss, recon and kl; `extra` the
    objective's own terms (`tc`, `capacity`, ...)."""
    report = {
        "loss": means[0],
        "recon": means[1],
        "kl": means[2],
        **extra,
        "active_latents": float(sum(v > ACTIVE_KL_THRESHOLD for v in kl_per_latent)),
    }
    report.update({f"kl/{i}": v for i, v in enumerate(kl_per_latent)})
    return report


def non_finite_reason(step: int, configuration: Configuration, seed: int, means: list[float]) -> str:
    """Why a model stopped: its step, its model and its window's means of loss, recon and kl."""
    return (
        f"non-finite loss at step {step} ({configuration.label()} seed={seed}): "
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
        configuration: Configuration,
        seeds: Iterable[int],
        stored: StoredImages | None = None,
        gpu_share: float | None = None,
    ) -> None:
        self.seeds = tuple(int(s) for s in seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a trial needs distinct seeds, at least one; got {list(self.seeds)}")
        self.settings = settings
        self.configuration = configuration
        training = settings.training
        self.device = resolve_device(training.device)
        configure_process(self.device, training.threads, gpu_share, training.tf32)
        self.dataset = shared_dataset(settings.data, str(self.device), stored)
        problem = unsupported_metrics(self.dataset, settings.eval.metrics)
        if problem:
            raise ValueError(problem)
        models = []
        for seed in self.seeds:
            torch.manual_seed(seed)  # each model's weights are drawn as a lone model with its seed draws them
            models.append(BetaVAE(settings.model.latent_dim, channels=self.dataset.image_shape[0]))
        self.stacked = StackedBetaVAE(models).to(self.device)
        # The noise is an input of the stacked forward, so the whole of it compiles as one graph;
        # on a GPU replayed as CUDA graphs: one launch instead of a few hundred small kernels.
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self._step_model = torch.compile(self.stacked, mode=mode) if training.compile else self.stacked
        # Fused Adam on a GPU: one kernel for every parameter instead of a dozen launches per step.
        self.optimizer = torch.optim.Adam(
            self.stacked.parameters(), lr=training.lr, betas=(0.9, 0.999), eps=1e-8,
            fused=self.device.type == "cuda",
        )  # fmt: skip
        # One generator per model for its data and noise: a model's whole randomness, restored from its checkpoint.
        self.generators = [torch.Generator(self.device).manual_seed(seed) for seed in self.seeds]
        self.objective = make_objective(
            configuration.objective, dict(configuration.weights), self.seeds, settings.model.latent_dim,
            self.generators, settings.objective.capacity_steps,
        )  # fmt: skip
        self.use_amp = training.amp and self.device.type == "cuda"
        self._graphs = training.compile and self.device.type == "cuda"
        self.failed: dict[int, str] = {}  # seed -> reason
        self._frozen = torch.empty(0, dtype=torch.long, device=self.device)  # failed models' slices
        self.step = 0
        self._reset_window()

    # -- training -------------------------------------------------------------------------
    def _reset_window(self) -> None:
        size, d = len(self.seeds), self.settings.model.latent_dim
        self._sums = torch.zeros(size, 3, device=self.device)  # loss, recon, kl per model
        self._kl_sums = torch.zeros(size, d, device=self.device)
        self._extra_sums: dict[str, torch.Tensor] = {}  # the objective's own terms, per model
        self._window_steps = 0
        self._window_start = time.perf_counter()

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's images (B, S, C, H, W) and noise (S, B, D), each model's from its generator.

        Per generator the draws come in one fixed order: factors, the
        observations' randomness, then the noise. Observations that draw
        nothing (`deterministic` datasets) are rendered for all models at once.

        The draws run eagerly, outside the compiled step, even with
        `training.compile`: a compiled graph cannot draw from a model's own
        generator. Dynamo breaks the graph at every random op given a
        `torch.Generator` (seen with torch 2.13: "Failed to convert args/kwargs
        to proxy", the generator a UserDefinedObjectVariable), so compiled
        draws would still run eagerly, between graph fragments; drawn inside
        the graph without the generators, they would come from Inductor's own
        random stream, which is neither a lone model's stream (the module's
        contract) nor saved in its checkpoint. The cost is about five small
        kernels per model per step (the factors' rand, scale, truncate and
        clamp, and the noise), more where the observations draw; the GPU
        benchmark reports the draws' time per step beside the step's.
        """
        batch, d = self.settings.training.batch_size, self.settings.model.latent_dim
        factors = [self.dataset.sample_factors_torch(batch, g) for g in self.generators]
        if self.dataset.deterministic:
            flat = torch.stack(factors, dim=1).flatten(0, 1)  # (B*S, F), model-minor
            x = self.dataset.observations(flat).unflatten(0, (batch, len(self.seeds)))
        else:
            x = torch.stack([self.dataset.observations(f, g) for f, g in zip(factors, self.generators)], dim=1)
        # bfloat16 under autocast: the noise in the dtype of the codes it perturbs.
        dtype = torch.bfloat16 if self.use_amp else torch.float32
        eps = [torch.randn((batch, d), generator=g, device=self.device, dtype=dtype) for g in self.generators]
        return x, torch.stack(eps)

    def train_step(self) -> None:
        x, eps = self.draw()
        if self._graphs:  # a new iteration: the last step's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            logits, mu, logvar, z = self._step_model(x, eps)
        terms = self.objective.terms(x, logits, mu, logvar, z, self.step)  # float32, outside autocast
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.sum().backward()
        if len(self._frozen):
            stacked_adam.zero_gradients(self.stacked.parameters(), self._frozen)  # NaN gradients included
        self.optimizer.step()
        self.objective.update(terms)  # after the VAE's backward: FactorVAE's discriminator step
        with torch.no_grad():
            self._sums += torch.stack((terms.loss, terms.recon, terms.kl), dim=1).detach()
            self._kl_sums += terms.kl_per_latent.detach()
            for name, value in terms.extra.items():
                self._extra_sums[name] = self._extra_sums.get(name, 0) + value.detach()
        self._window_steps += 1
        self.step += 1

    def train(self, steps: int) -> TrialReport:
        """Run `steps` steps and return the means over them, as a report."""
        for _ in range(steps):
            self.train_step()
        return self.window_report()

    def window_report(self) -> TrialReport:
        """Means since the last report; a model whose loss went non-finite fails here, alone.

        Raises NonFiniteLossError once every model of the trial has failed.
        """
        n = max(self._window_steps, 1)
        means = (self._sums / n).cpu().tolist()
        per_latent = (self._kl_sums / n).cpu().tolist()
        extra = {name: (value / n).cpu().tolist() for name, value in self._extra_sums.items()}
        elapsed = time.perf_counter() - self._window_start
        images = self._window_steps * self.settings.training.batch_size * len(self.seeds)
        models: dict[int, dict[str, float]] = {}
        newly_failed = False
        for i, seed in enumerate(self.seeds):
            if seed in self.failed:
                continue
            own = {name: values[i] for name, values in extra.items()}
            if all(math.isfinite(v) for v in means[i] + per_latent[i] + list(own.values())):
                models[seed] = model_report(means[i], per_latent[i], own)
            else:
                self.failed[seed] = non_finite_reason(self.step, self.configuration, seed, means[i])
                newly_failed = True
        if newly_failed:
            self._freeze_failed()
        self._reset_window()
        if len(self.failed) == len(self.seeds):
            raise NonFiniteLossError("every model of the trial failed: " + "; ".join(self.failed.values()))
        rate = images / elapsed if elapsed > 0 else 0.0
        return TrialReport(models, dict(self.failed), rate)

    def _freeze_failed(self) -> None:
        """Stop the failed models' slices: no gradient, and no Adam moments left to move them."""
        index = [i for i, seed in enumerate(self.seeds) if seed in self.failed]
        self._frozen = torch.tensor(index, dtype=torch.long, device=self.device)
        stacked_adam.clear_moments(self.optimizer, self._frozen)
        self.objective.freeze(index)

    # -- one model of the stack -----------------------------------------------------------
    def alive(self) -> list[int]:
        """The seeds of the models that train on."""
        return [seed for seed in self.seeds if seed not in self.failed]

    def model(self, seed: int) -> BetaVAE:
        """The model of `seed` as a plain `BetaVAE` with its current weights (a copy)."""
        return self.stacked.model(self.seeds.index(seed))

    def eval_rng(self, seed: int) -> np.random.Generator:
        """A fresh generator per (seed, step): a model's evaluations repeat exactly after a resume,
        in a stack of any size."""
        return np.random.default_rng([seed, self.step])

    def evaluate(self, seed: int) -> dict[str, float]:
        """The scores of the model of `seed`."""
        return evaluate(self.model(seed), self.dataset, self.settings.eval, self.eval_rng(seed))

    # -- checkpoints ----------------------------------------------------------------------
    def _identity(self, seed: int) -> dict[str, Any]:
        configuration = self.configuration
        return {"objective": configuration.objective, "weights": dict(configuration.weights), "seed": seed}

    def save(self, folder: str | Path) -> None:
        """One checkpoint per model, in `model_folder(seed)`; the objective's own state (FactorVAE's
        discriminator) beside the model's, never in its weights file, which export ships."""
        optimizer = self.optimizer.state_dict()
        for i, seed in enumerate(self.seeds):
            state = {
                "step": self.step,
                **self._identity(seed),
                "optimizer": stacked_adam.model_state(optimizer, i),
                "rng": self.generators[i].get_state(),
                "objective_state": self.objective.model_state(i),
            }
            if seed in self.failed:
                state["failed"] = self.failed[seed]
            save_checkpoint(Path(folder) / model_folder(seed), self.stacked.model_state(i), state)

    def model_folders(self, folder: Path) -> list[Path]:
        """Where each model's checkpoint lies in `folder`.

        A trial of one model saved by earlier releases kept its files at the
        checkpoint's root, with no `seed=<n>` folder: such a checkpoint still resumes.
        """
        if len(self.seeds) == 1 and (folder / WEIGHTS_FILE).is_file():
            return [folder]
        expected = {model_folder(seed) for seed in self.seeds}
        entries = folder.iterdir() if folder.is_dir() else ()
        present = {p.name for p in entries if p.is_dir() and not p.name.startswith(".")}
        if present != expected:
            raise ValueError(
                f"checkpoint {folder} holds the models {sorted(present) or 'none'}, "
                f"not this trial's {sorted(expected)}"
            )
        return [folder / model_folder(seed) for seed in self.seeds]

    def load(self, folder: str | Path) -> None:
        folders = self.model_folders(Path(folder))
        states = [load_state(f) for f in folders]
        for seed, state, where in zip(self.seeds, states, folders):
            check_identity(where, saved_identity(state), self._identity(seed))
        steps = {int(state["step"]) for state in states}
        if len(steps) != 1:
            raise ValueError(f"checkpoint {folder}: its models were saved at different steps {sorted(steps)}")
        for i, where in enumerate(folders):
            self.stacked.load_model(i, load_weights(where, self.device))
            self.generators[i].set_state(states[i]["rng"])
        self.optimizer.load_state_dict(stacked_adam.stacked_state([s["optimizer"] for s in states]))
        self.objective.load_model_states([s.get("objective_state", {}) for s in states])
        self.failed = {seed: state["failed"] for seed, state in zip(self.seeds, states) if "failed" in state}
        if self.failed:
            self._freeze_failed()
        self.step = steps.pop()
        self._reset_window()
