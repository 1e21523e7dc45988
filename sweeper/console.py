"""The trial table every stage prints: after a sweep (`launch`, `resume`) and for `sweeper status`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainables.trial import TrialSpec

TABLE_TERMS = ("step", "recon", "kl")


@dataclass(frozen=True)
class TrialRow:
    """One Ray Tune trial (one model, or a pack of seeds) as a table shows it."""

    trial_id: str
    status: str
    spec: TrialSpec
    last_result: dict[str, Any]
    error: str | None

    def sort_key(self) -> tuple:
        configuration = self.spec.configuration
        return configuration.objective, configuration.weights, self.spec.seeds[0]


def fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def byte_size(count: int) -> str:
    """`5.9 GB`, `369 MB`: decimal units, three significant digits, as the README gives dataset sizes."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def last_line(error: object, missing: str = "trial failed without an error message") -> str:
    """The last line of a trial's traceback, the exception and its message: how every stage names an error."""
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    return (lines[-1] if lines else missing)[:5000]


def trial_table(rows: Sequence[TrialRow], metric: str | None) -> str:
    """A plain-text table, a row per trial; a pack's values are its seed means."""
    keys = [*TABLE_TERMS, *([metric] if metric and metric not in TABLE_TERMS else [])]
    columns = ["trial", "status", "configuration", "seed", *keys]
    body = [
        [t.trial_id, t.status, t.spec.configuration.label(), t.spec.seed_span()]
        + [fmt(t.last_result.get(k, "-")) for k in keys]
        for t in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]
    return "\n".join(lines)
