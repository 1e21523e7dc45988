"""UDR for a sweep: each trial ranked by how consistently its configuration's seeds learned the same latents.

A user without ground-truth factors can still choose a model this way
(Duan et al. 2020): every finished trial's checkpoint encodes one shared set of
observations, and within each configuration every seed is scored against the
other seeds (`trainables.metrics.udr`). A trial whose checkpoint is gone, or a
configuration left with fewer than three models, gets no UDR and a line in
`problems`, so the rest of the report is still made: the pair score is
symmetric, so two seeds always get the same UDR and it cannot rank them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from sweeper.analyse.checkpoints import (
    OBSERVATION_SEED,
    OBSERVATIONS,
    MissingCheckpoint,
    encode,
    load_model,
    observation_set,
)
from sweeper.analyse.results import CONFIGURATION_COLUMNS, row_label
from sweeper.analyse.selection import UDR, configurations, finished
from trainables.metrics.udr import udr_scores
from trainables.objectives.base import (
    ACTIVE_KL_THRESHOLD as KL_THRESHOLD,  # the trials count active latents by it
)

MIN_SEEDS = 3  # fewer cannot be ranked: the pair score is symmetric


@dataclass
class SweepUdr:
    by_run: dict[str, float] = field(default_factory=dict)  # run id -> UDR
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UdrModel:
    """One model to rank: its run, how messages name it and its configuration, and its checkpoint."""

    run_id: str
    label: str
    configuration: str  # the models of one configuration are ranked among each other
    checkpoint: str | None


def sweep_udr(
    table: pa.Table, observations: int = OBSERVATIONS, seed: int = OBSERVATION_SEED, method: str = "spearman"
) -> SweepUdr:
    """The UDR of every finished trial among the other seeds of its configuration, from the checkpoints."""
    table = finished(table)
    keys, labels = configurations(table)
    rows = table.select(["run_id", *CONFIGURATION_COLUMNS, "seed", "checkpoint"]).to_pylist()
    order = np.argsort(labels, kind="stable")  # the configurations in order, as they are reported
    models = [
        UdrModel(rows[i]["run_id"], row_label(rows[i]), keys[labels[i]].label(), rows[i]["checkpoint"])
        for i in order
    ]
    return models_udr(models, observations, seed, method)


def models_udr(
    models: Sequence[UdrModel],
    observations: int = OBSERVATIONS,
    seed: int = OBSERVATION_SEED,
    method: str = "spearman",
) -> SweepUdr:
    """The UDR of each model among the others of its configuration, from their checkpoints."""
    images = observation_set(observations, seed)
    encoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    problems = []
    for model in models:
        try:
            loaded = load_model(model.checkpoint)
        except MissingCheckpoint as exc:
            problems.append(f"{model.label}: {exc}")
            continue
        encoded[model.run_id] = encode(loaded, images)
        if not (encoded[model.run_id][1] > KL_THRESHOLD).any():
            problems.append(f"{model.label}: no latent has a KL above {KL_THRESHOLD} nats, so its UDR is 0")
    groups: dict[str, list[str]] = {}
    for model in models:
        groups.setdefault(model.configuration, []).append(model.run_id)
    found = udr_by_configuration(groups, encoded, method)
    return SweepUdr(found.by_run, problems + found.problems)


def udr_within_configurations(
    table: pa.Table, encoded: dict[str, tuple[np.ndarray, np.ndarray]], method: str = "spearman"
) -> SweepUdr:
    """UDR of each encoded run (run id -> (codes, KL per latent)) among its configuration's encoded runs."""
    keys, labels = configurations(table)
    run_ids = table["run_id"].to_pylist()
    groups = {key.label(): [run_ids[row] for row in np.flatnonzero(labels == index)] for index, key in enumerate(keys)}
    return udr_by_configuration(groups, encoded, method)


def udr_by_configuration(
    groups: dict[str, list[str]], encoded: dict[str, tuple[np.ndarray, np.ndarray]], method: str = "spearman"
) -> SweepUdr:
    """UDR of each encoded run among the encoded runs of its group (configuration name -> run ids)."""
    out = SweepUdr()
    for name, runs in groups.items():
        members = [run for run in runs if run in encoded]
        if len(members) < MIN_SEEDS:
            out.problems.append(
                f"{name}: {len(members)} model(s) to compare; UDR needs at least "
                f"{MIN_SEEDS} seeds (with two, the pair score is symmetric and both get the same value)"
            )
            continue
        codes, kls = zip(*(encoded[run] for run in members))
        scores = udr_scores(codes, kls, method=method, kl_threshold=KL_THRESHOLD)
        out.by_run.update(zip(members, map(float, scores)))
    return out


def with_udr(table: pa.Table, udr: SweepUdr) -> pa.Table:
    """The table with a `udr` column, null for trials without one."""
    return table.append_column(
        UDR, pa.array([udr.by_run.get(run) for run in table["run_id"].to_pylist()], pa.float64())
    )
