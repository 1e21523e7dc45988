"""Checkpoint files: weights as safetensors, trainer state as a weights-only torch file.

Neither file unpickles arbitrary objects on load, so a checkpoint from a shared
sweep folder is safe to open. Files are written under a temporary name and
renamed, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from trainables.trial import Configuration, ModelSpec

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"


def _replace_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(folder: str | Path, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cpu_weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    _replace_atomically(folder / WEIGHTS_FILE, lambda p: save_file(cpu_weights, str(p)))
    _replace_atomically(folder / STATE_FILE, lambda p: torch.save(state, p))


def load_weights(folder: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {folder}: no {WEIGHTS_FILE}")
    return load_file(str(path), device=str(device))


def load_state(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {folder}: no {STATE_FILE}")
    return torch.load(path, map_location="cpu", weights_only=True)


def check_identity(folder: str | Path, state: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint of another model: its state must hold `expected` (searched values, seed).

    A checkpoint found by path (a resume, an export) could be any model's; a
    wrong one would continue or ship under another model's name.
    """
    saved = {key: state.get(key) for key in expected}
    if saved != expected:
        def shown(values: dict[str, Any]) -> str:
            return ", ".join(f"{k}={v}" for k, v in values.items())

        raise ValueError(f"checkpoint {folder} belongs to {shown(saved)}, not to {shown(expected)}")


def model_identity(model: ModelSpec) -> dict[str, Any]:
    """What a checkpoint of `model` must name, to compare with its `saved_identity`."""
    configuration = model.configuration
    return {"objective": configuration.objective, "weights": dict(configuration.weights), "seed": model.seed}


def saved_identity(state: dict[str, Any]) -> dict[str, Any]:
    """The model a checkpoint's state was saved for: objective, weights and seed.

    Checkpoints of earlier releases name beta and C_max instead of an objective.
    """
    if "objective" in state:
        return {"objective": state["objective"], "weights": state["weights"], "seed": state["seed"]}
    configuration = Configuration.from_beta_and_capacity(state["beta"], state["capacity_max"])
    return model_identity(ModelSpec(configuration, state["seed"]))
