"""The plan's tracking line: the metric values per second a sweep sends to MLflow, against what its store takes.

Every model sends one report of its training values every
`training.report_every` steps, and the driver writes them all to one store.
The sweep's rate follows from the budget's measured images/s; the store's
capacity is the latest `python -m bench` figure for its kind (section
'Tracking' of docs/benchmarks.md): a SQLite file, or an `mlflow server`.
A sweep above it is not stopped, and loses nothing (the writes wait in the
driver's buffer and its pending file), but its tracking falls behind and the
end of the sweep waits for it: the plan says so, naming the setting to raise.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from sweeper.config import SweepConfig, effective_ray_address, effective_tracking_uri
from sweeper.run import space
from sweeper.run.budget import BENCHMARKS, Budget, sections, table_rows
from trainables.report import model_values

SHARED_VALUES = 2  # `step` and the model's images/s, which the tracking logs beside a model's own values
CAPACITY_HEADER, CAPACITY_COLUMN = "store", 3  # the bench's table: store kind, ..., metric values/s


@dataclass(frozen=True)
class Capacity:
    values_per_s: float
    source: str


def store_kind(uri: str) -> str | None:
    """'sqlite' or 'server', the kinds the bench measures; None for a store it does not."""
    if uri.startswith("sqlite:"):
        return "sqlite"
    if uri.startswith(("http://", "https://")):
        return "server"
    return None


def store_capacity(kind: str, benchmarks: Path = BENCHMARKS) -> Capacity | None:
    """The sustained metric values/s of the bench's store of `kind`, or None when the file has none."""
    try:
        section = sections(benchmarks.read_text()).get("tracking", "")
    except OSError:
        return None
    for row in table_rows(section, CAPACITY_HEADER):
        if row[0] == kind:
            return Capacity(
                float(row[CAPACITY_COLUMN].replace(",", "")),
                f"{benchmarks.parent.name}/{benchmarks.name}, section 'Tracking': {kind}",
            )
    return None


def models_at_once(config: SweepConfig, address: str | None) -> int:
    """At most: every trial, or `search.max_concurrent`, or on the local Ray as many as its CPUs hold;
    times the models a trial trains."""
    trials = space.trial_count(config)
    if config.search.max_concurrent is not None:
        trials = min(trials, config.search.max_concurrent)
    if effective_ray_address(config, address) is None:
        trials = min(trials, max(1, int((os.cpu_count() or 1) // config.resources.cpu)))
    return trials * (config.search.seeds if config.search.pack_seeds else 1)


def write_rate_lines(
    config: SweepConfig, work: Budget, address: str | None, benchmarks: Path = BENCHMARKS
) -> list[str]:
    """The sweep's expected write rate, and a warning when it exceeds what its store sustains."""
    if work.rate is None:
        return []  # no images/s, no reports/s: the budget's line already says why
    training = config.training
    per_trial = config.search.seeds if config.search.pack_seeds else 1
    # A pack's images/s is its models' together (as the budget counts it): each model steps at its share.
    reports_per_s = work.rate.images_per_s / (training.batch_size * per_trial * training.report_every)
    values = max(model_values(kind, config.model.latent_dim) for kind in config.search.objectives) + SHARED_VALUES
    models = models_at_once(config, address)
    rate = models * reports_per_s * values
    lines = [
        f"tracking: {models} model{'s' if models != 1 else ''} at once x {reports_per_s:.3g} reports/s x {values} values = {rate:,.0f} metric "
        f"values/s (a report every {training.report_every} steps of batch {training.batch_size})"
    ]
    uri = effective_tracking_uri(config)
    kind = store_kind(uri)
    capacity = store_capacity(kind, benchmarks) if kind else None
    if capacity is not None and rate > capacity.values_per_s:
        needed = math.ceil(training.report_every * rate / capacity.values_per_s)
        lines.append(
            f"warning: that is more than the {capacity.values_per_s:,.0f} values/s a {kind} store sustains "
            f"(from {capacity.source}): its tracking will fall behind and the sweep's end wait for it; raise "
            f"training.report_every to {needed} or more"
        )
    return lines
