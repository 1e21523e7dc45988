"""The study's six objectives by kind: their classes, hyperparameters and the study's values of them.

Kinds and hyperparameter names follow disentanglement_lib's
`config/unsupervised_study_v1/sweep.py` (`get_default_models`), except
`beta_tcvae` (the study's `beta_tc_vae`). Every kind's grid lists all its
hyperparameters; those the study holds fixed have one value. AnnealedVAE's
`iteration_threshold` is the sweep setting `objective.capacity_steps`
(100,000 in the study), not a weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from trainables.objectives.annealed_vae import AnnealedVAE
from trainables.objectives.base import Objective
from trainables.objectives.beta_tcvae import BetaTCVAE
from trainables.objectives.beta_vae import BetaVAE
from trainables.objectives.dip_vae import DIPVAEI, DIPVAEII
from trainables.objectives.discriminator import StackedDiscriminator
from trainables.objectives.factor_vae import FactorVAE

OBJECTIVES: dict[str, type[Objective]] = {
    cls.kind: cls for cls in (BetaVAE, AnnealedVAE, FactorVAE, DIPVAEI, DIPVAEII, BetaTCVAE)
}
WEIGHTS: dict[str, tuple[str, ...]] = {kind: cls.weights for kind, cls in OBJECTIVES.items()}

_LAMBDA_OD = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
STUDY_GRID: dict[str, dict[str, tuple[float, ...]]] = {
    "beta_vae": {"beta": (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)},
    "annealed_vae": {"gamma": (1000.0,), "c_max": (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)},
    "factor_vae": {"gamma": (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)},
    "dip_vae_i": {"lambda_od": _LAMBDA_OD},
    "dip_vae_ii": {"lambda_od": _LAMBDA_OD},
    "beta_tcvae": {"beta": (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)},
}


def make_objective(
    kind: str,
    weights: Mapping[str, float],
    seeds: Sequence[int],
    latent_dim: int,
    generators: Sequence[torch.Generator],
    capacity_steps: int = 0,
) -> Objective:
    """The objective `kind` for a pack of models with these seeds and per-model generators.

    `weights` must name exactly the kind's hyperparameters (`WEIGHTS[kind]`).
    FactorVAE's discriminators are built here, one per seed, on the
    generators' device. `capacity_steps`: AnnealedVAE's annealing length.
    """
    if kind not in OBJECTIVES:
        raise ValueError(f"objective kind {kind!r}: unknown; known: {sorted(OBJECTIVES)}")
    expected = WEIGHTS[kind]
    unknown = sorted(set(weights) - set(expected))
    missing = [name for name in expected if name not in weights]
    if unknown or missing:
        problems = [f"{name} does not belong to it" for name in unknown] + [f"{name} is missing" for name in missing]
        raise ValueError(f"objective {kind} takes {list(expected)}: " + "; ".join(problems))
    if len(generators) != len(seeds):
        raise ValueError(f"{len(generators)} generators for {len(seeds)} seeds")
    if kind == FactorVAE.kind:
        discriminator = StackedDiscriminator.seeded(seeds, latent_dim).to(generators[0].device)
        return FactorVAE(weights["gamma"], discriminator, generators)
    if kind == AnnealedVAE.kind:
        return AnnealedVAE(weights["gamma"], weights["c_max"], capacity_steps)
    return OBJECTIVES[kind](**weights)
