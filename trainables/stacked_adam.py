"""One Adam over stacked parameters (a leading model dimension S), read and written one model at a time.

Adam is per element, so one optimizer over a stack steps each model's slice
as that model's own Adam would. Its state is split per model for one
checkpoint folder per model, and a failed model's slice is stopped by
clearing its moments (with its gradients zeroed, Adam then moves it by
exactly nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

MOMENTS = ("exp_avg", "exp_avg_sq")  # Adam's per-element state; "step" is one count for every model


def model_state(stacked: dict[str, Any], i: int) -> dict[str, Any]:
    """Model i's part of a stack's Adam `state_dict()`, in torch's Adam state_dict format.

    Copies, step count included: Adam counts its steps in place, so a shared
    count would advance twice once the state is loaded in a second optimizer.
    """
    state = {
        k: {key: (value if key == "step" else value[i]).clone() for key, value in entry.items()}
        for k, entry in stacked["state"].items()
    }
    return {"state": state, "param_groups": stacked["param_groups"]}


def stacked_state(models: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The stack's Adam `state_dict()` from its models' parts (the inverse of `model_state`)."""
    first = models[0]
    state = {
        k: {
            key: (value if key == "step" else torch.stack([m["state"][k][key] for m in models]))
            for key, value in entry.items()
        }
        for k, entry in first["state"].items()
    }
    return {"state": state, "param_groups": first["param_groups"]}


def clear_moments(optimizer: torch.optim.Optimizer, models: torch.Tensor) -> None:
    """Zero the Adam moments of these models' slices (a long tensor of indices)."""
    with torch.no_grad():
        for state in optimizer.state.values():
            for key in MOMENTS:
                state[key].index_fill_(0, models, 0.0)


def zero_gradients(parameters: Iterable[torch.Tensor], models: torch.Tensor) -> None:
    """Zero these models' slices of the gradients, NaN included."""
    for p in parameters:
        if p.grad is not None:
            p.grad.index_fill_(0, models, 0.0)
