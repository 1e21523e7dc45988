"""The work of a sweep and what it costs: images to train, and time and GPU-hours at a measured rate.

The rate is a measurement, never a guess: `--rate` (images/s per trial), or
the latest `python -m bench` figure for the device the trials ask for, read
from its section of docs/benchmarks.md ('Training step (CPU)' for CPU trials;
'Training on a GPU' for GPU trials: the row of as many trials per GPU as the
config packs onto one, else the single trial at the config's batch size).
The figures are of single models, so a pack is estimated at one model's rate
per image: an upper bound on its time, since packing is what makes it faster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sweeper.config import SweepConfig
from sweeper.run import space

BENCHMARKS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Rate:
    images_per_s: float
    source: str  # which figure, said in the plan


@dataclass(frozen=True)
class Budget:
    models: int
    steps: int  # per model
    images: int  # every model's steps times the batch
    rate: Rate | None
    by_objective: dict[str, int]  # models per objective, for a grid (Optuna chooses as it goes)

    @property
    def trial_hours(self) -> float | None:
        """Hours of trial time, one trial after another (the wall time with one trial at a time)."""
        return None if self.rate is None else self.images / self.rate.images_per_s / 3600


def budget(config: SweepConfig, rate: float | None = None, benchmarks: Path = BENCHMARKS) -> Budget:
    models, steps = space.model_count(config), config.training.steps
    measured = Rate(rate, "--rate") if rate is not None else bench_rate(config, benchmarks)
    by_objective: dict[str, int] = {}
    if config.search.kind == "grid":
        for configuration in space.grid_configurations(config):
            by_objective[configuration.objective] = by_objective.get(configuration.objective, 0) + config.search.seeds
    return Budget(models, steps, models * steps * config.training.batch_size, measured, by_objective)


def sections(text: str) -> dict[str, str]:
    """The sections `python -m bench` writes, by name."""
    return {m[1]: m[2] for m in re.finditer(r"<!-- section:(\w+) -->(.*?)<!-- /section:\1 -->", text, re.DOTALL)}


def table_rows(section: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose first column is `first_header`, cells stripped."""
    rows, inside = [], False
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            inside = False
        elif cells[0] == first_header:
            inside = True
        elif inside and not set(cells[0]) <= set("-"):
            rows.append(cells)
    return rows


def _number(cell: str) -> float:
    return float(cell.split()[0].replace(",", ""))


def bench_rate(config: SweepConfig, benchmarks: Path) -> Rate | None:
    """The latest bench figure for the trials' device, or None when the file has none."""
    try:
        found = sections(benchmarks.read_text())
    except OSError:
        return None
    where = f"{benchmarks.parent.name}/{benchmarks.name}, section"
    gpu, compiled = config.resources.gpu, str(config.training.compile).lower()
    if gpu == 0:
        for row in table_rows(found.get("training", ""), "figure"):
            if row[0] == "training throughput":
                return Rate(_number(row[1]), f"{where} 'Training step (CPU)': training throughput (batch 64)")
        return None
    section = found.get("gpu", "")
    per_gpu = max(1, round(1 / gpu)) if gpu < 1 else 1
    for row in table_rows(section, "trials per GPU"):
        if int(row[0]) == per_gpu and row[1] == compiled and per_gpu > 1:
            return Rate(_number(row[3]), f"{where} 'Training on a GPU': {per_gpu} trials per GPU, compile {compiled}")
    for row in table_rows(section, "batch"):
        if int(row[0]) == config.training.batch_size and row[1].startswith("off") and row[2] == compiled:
            return Rate(
                _number(row[3]), f"{where} 'Training on a GPU': one trial, batch {row[0]}, float32, compile {compiled}"
            )
    return None
