"""Picks and statistics over a sweep's results table: each objective's trade-off and the seed sensitivity.

Pure functions: an Arrow table (as `sweeper.analyse.results` reads it) or numpy arrays
in, numbers, tables and picks out; no MLflow, no files. A configuration is an
objective and its weights (`trainables.trial.Configuration`); its trials
differ only in the seed. Objectives are compared side by side, never pooled:
each has its own trade-off against the weight the sweep varies for it.

Definitions, chosen so that every pick is deterministic:
- Median seed: sort a configuration's trials by (score, seed); with an odd
  count the middle one, with an even count the one of the two middle trials
  that has the lower seed. It is always a trial that exists, never an average.
- Best and worst seed: the highest and lowest score (for `maximize=False`, the
  other way round); ties go to the lower seed.
- Swept weight of an objective: the one weight whose value differs between
  the objective's configurations; its trade-off runs along it. With none or
  several such weights, the configurations in their label's order instead.
- Pareto front: configurations whose median reconstruction and median score
  no other configuration beats in both (lower recon, better score) with at
  least one strictly; once among the configurations of each objective
  (`pareto`), and, in a sweep of several objectives, once among all
  (`pareto_overall`).
- Study front: the configurations on the Optuna study's own Pareto front of
  the search objectives (`sweeper.analyse.study`), as the search saw them
  (seed means); shown next to the post-hoc front, which is of medians.
- Eta squared, within each objective: the one-way ANOVA share of a score's
  variance between that objective's configurations, SS_between / SS_total;
  1 - eta squared is left to the seed.
Trials without a value of the score in question take no part in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.stats

from sweeper.analyse.results import CONFIGURATION_COLUMNS, metric_names, row_configuration
from sweeper.analyse.study import Study
from sweeper.errors import ConfigError
from sweeper.tags import PICK_ROLE_TAG, SELECTED_TAG
from trainables.objectives.base import ACTIVE_KL_THRESHOLD
from trainables.trial import Configuration, ModelSpec

FINISHED = "FINISHED"
RECON = "recon"
ACTIVE_LATENTS = "active_latents"  # latents whose KL is above ACTIVE_KL_THRESHOLD, as each trial reports
UDR = "udr"  # the column sweeper.analyse.udr adds: each trial's UDR among its configuration's seeds
SCORE_PREFIX = "disent/"

# Pick kinds and the roles a run plays in them, as tagged on the runs.
TRADEOFF = "tradeoff"
SEED_SENSITIVITY = "seed_sensitivity"
UDR_RANKING = "udr_ranking"
MEDIAN_SEED, BEST_SEED, WORST_SEED, TOP_UDR = "median_seed", "best_seed", "worst_seed", "top_udr"
PARETO, PARETO_OVERALL = "pareto", "pareto_overall"
STATISTICS_SCHEMA = pa.schema(
    [("objective", pa.string()), ("configuration", pa.string()), ("metric", pa.string()), ("n", pa.int64())]
    + [(stat, pa.float64()) for stat in ("mean", "median", "std", "min", "max")]
)


class UnknownScore(ConfigError):
    """The score to select by was reported by no finished trial (exit code 2: a wrong argument)."""


@dataclass(frozen=True)
class Pick:
    kind: str
    role: str
    run_id: str
    configuration: Configuration
    seed: int
    value: float  # the score the pick was made by

    def model(self) -> ModelSpec:
        return ModelSpec(self.configuration, self.seed)


PICK_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("role", pa.string()),
        ("run_id", pa.string()),
        ("objective", pa.string()),
        ("configuration", pa.string()),
        ("seed", pa.int64()),
        ("value", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Picks:
    """Every pick of one selection, with the score it was made by and its direction."""

    by: str
    maximize: bool
    items: tuple[Pick, ...]
    study_front: frozenset[Configuration] | None = None  # None without an Optuna study

    def of(self, kind: str, role: str | None = None) -> list[Pick]:
        return [p for p in self.items if p.kind == kind and (role is None or p.role == role)]

    def runs(self) -> dict[str, Pick]:
        """Every picked run once, in the order of the picks, with its first pick."""
        first: dict[str, Pick] = {}
        for p in self.items:
            first.setdefault(p.run_id, p)
        return first

    def tags(self) -> dict[str, dict[str, str]]:
        """run id -> its `selected` and `role` tags: its kinds and its roles, each comma-joined in pick order."""
        kinds: dict[str, dict[str, None]] = {}
        roles: dict[str, dict[str, None]] = {}
        for p in self.items:
            kinds.setdefault(p.run_id, {})[p.kind] = None
            roles.setdefault(p.run_id, {})[p.role] = None
        return {run: {SELECTED_TAG: ",".join(kinds[run]), PICK_ROLE_TAG: ",".join(roles[run])} for run in kinds}


# -- the table ----------------------------------------------------------------------------


def finished(table: pa.Table) -> pa.Table:
    """The trials that ran to the end; failed and unfinished ones are reported, never picked."""
    return table.filter(pc.equal(table["status"], FINISHED))


def collapse_note(done: pa.Table) -> str | None:
    """A note when no finished model left the prior (no active latent in any), else None.

    Such a sweep's trade-off is noise: KL near zero for every beta, scores of
    codes that carry nothing. A reader must never take it for a result.
    """
    if ACTIVE_LATENTS not in done.column_names or done.num_rows == 0:
        return None
    active = column(done, ACTIVE_LATENTS)
    if np.isnan(active).any() or active.max() > 0:
        return None
    largest = float(np.nanmax(column(done, "kl"))) if "kl" in done.column_names else float("nan")
    return (
        f"no model left the prior: none of the {done.num_rows} finished models has an active latent "
        f"(KL above {ACTIVE_KL_THRESHOLD} nats; the largest total KL is {largest:.3g} nats), so the trade-off "
        "and the scores below describe codes that carry nothing; train longer (training.steps) or faster "
        "(training.lr) before reading them as a result"
    )


def column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 numpy, NaN where null."""
    return table[name].to_numpy(zero_copy_only=False).astype(np.float64)


def optional_column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column, or all NaN when the table has none of that name."""
    return column(table, name) if name in table.column_names else np.full(table.num_rows, np.nan)


def configuration_order(configuration: Configuration) -> tuple:
    """Configurations sort by objective, then by their weights in the order their label names them."""
    return configuration.objective, configuration.weights


def configurations(table: pa.Table) -> tuple[list[Configuration], np.ndarray]:
    """The distinct configurations in `configuration_order`, and each row's index into them."""
    rows = [row_configuration(row) for row in table.select(list(CONFIGURATION_COLUMNS)).to_pylist()]
    keys = sorted(set(rows), key=configuration_order)
    index = {key: i for i, key in enumerate(keys)}
    return keys, np.array([index[row] for row in rows], dtype=np.int64)


def rows_of(keys: Sequence[Configuration], labels: np.ndarray, among: Sequence[Configuration]) -> np.ndarray:
    """Mask of the rows whose configuration is one of `among` (`keys` and `labels` from `configurations`)."""
    return np.isin(labels, [keys.index(c) for c in among])


@dataclass(frozen=True)
class TradeOff:
    """One objective's configurations in trade-off order, and the weight they are swept along (if one)."""

    name: str
    configurations: tuple[Configuration, ...]
    swept: str | None  # the one weight that varies between them; None when none or several do

    def positions(self) -> list[float]:
        """Where each configuration lies on the trade-off: its swept weight, else its place in the order."""
        if self.swept is None:
            return [float(i) for i in range(len(self.configurations))]
        return [c.weight(self.swept) for c in self.configurations]

    def axis_label(self) -> str:
        return self.swept or "configuration"


def tradeoffs(keys: Sequence[Configuration]) -> list[TradeOff]:
    """The configurations grouped by objective (in `configuration_order`), each group ordered along its
    swept weight."""
    grouped: dict[str, list[Configuration]] = {}
    for key in sorted(keys, key=configuration_order):
        grouped.setdefault(key.objective, []).append(key)
    out = []
    for name, group in grouped.items():
        names = dict.fromkeys(n for c in group for n, _ in c.weights)
        varying = [n for n in names if len({c.weight(n) for c in group}) > 1]
        swept = varying[0] if len(varying) == 1 else None
        if swept is not None:
            group.sort(key=lambda c: c.weight(swept))
        out.append(TradeOff(name, tuple(group), swept))
    return out


def score_names(table: pa.Table) -> list[str]:
    """What the analyses compare: reconstruction, KL, every disentanglement score and UDR, if present."""
    names = metric_names(table)
    return (
        [n for n in (RECON, "kl") if n in names]
        + [n for n in names if n.startswith(SCORE_PREFIX)]
        + ([UDR] if UDR in names else [])
    )


def require_score(table: pa.Table, score: str) -> None:
    """Refuse a score that no trial of `table` reported, naming the ones that were."""
    if score in table.column_names and table[score].null_count < table.num_rows:
        return
    known = [n for n in score_names(table) if table[n].null_count < table.num_rows]
    raise UnknownScore(f"no finished trial reported {score!r}; scores reported: {', '.join(known) or 'none'}")


# -- seed statistics ----------------------------------------------------------------------


def seed_statistics(table: pa.Table, metrics: Sequence[str] | None = None) -> pa.Table:
    """Per configuration and metric: the number of seeds with a value, mean, median, std (ddof 1), min, max.

    Long format, one row per (configuration, metric) with at least one value;
    std is null for a single seed.
    """
    keys, labels = configurations(table)
    rows = []
    for name in metrics if metrics is not None else metric_names(table):
        values = column(table, name)
        for index, key in enumerate(keys):
            v = values[(labels == index) & np.isfinite(values)]
            if v.size:
                rows.append(
                    {
                        "objective": key.objective,
                        "configuration": key.label(),
                        "metric": name,
                        "n": v.size,
                        "mean": v.mean(),
                        "median": np.median(v),
                        "std": v.std(ddof=1) if v.size > 1 else None,
                        "min": v.min(),
                        "max": v.max(),
                    }
                )
    return pa.Table.from_pylist(rows, schema=STATISTICS_SCHEMA)


# -- picks within a configuration ---------------------------------------------------------


def median_index(scores: np.ndarray, seeds: np.ndarray) -> int:
    """Position of the median seed (see the module docstring) among finite `scores`."""
    order = _ordered(scores, seeds)
    n = order.size
    if n == 0:
        raise ValueError("no finite score to take the median of")
    if n % 2:
        return int(order[n // 2])
    low, high = order[n // 2 - 1], order[n // 2]
    return int(low if seeds[low] <= seeds[high] else high)


def best_index(scores: np.ndarray, seeds: np.ndarray, maximize: bool = True) -> int:
    """Position of the best finite score; ties go to the lower seed."""
    return _extreme(scores, seeds, highest=maximize)


def worst_index(scores: np.ndarray, seeds: np.ndarray, maximize: bool = True) -> int:
    """Position of the worst finite score; ties go to the lower seed."""
    return _extreme(scores, seeds, highest=not maximize)


def _ordered(scores: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Positions of the finite scores sorted by (score, seed)."""
    finite = np.flatnonzero(np.isfinite(scores))
    return finite[np.lexsort((seeds[finite], scores[finite]))]


def _extreme(scores: np.ndarray, seeds: np.ndarray, highest: bool) -> int:
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        raise ValueError("no finite score to pick from")
    target = scores[finite].max() if highest else scores[finite].min()
    tied = finite[scores[finite] == target]
    return int(tied[np.argmin(seeds[tied])])


# -- across configurations ----------------------------------------------------------------


def pareto_front(recon: np.ndarray, score: np.ndarray, maximize: bool = True) -> np.ndarray:
    """Mask of the points no other point beats in both: lower-or-equal recon and better-or-equal score,
    one of them strictly. Points with a NaN are never on the front and beat nothing."""
    recon = np.asarray(recon, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64) * (1 if maximize else -1)
    ok = np.isfinite(recon) & np.isfinite(score)
    r, s = recon[ok], score[ok]
    no_worse = (r[:, None] <= r[None, :]) & (s[:, None] >= s[None, :])  # [j, i]: j is no worse than i
    better = (r[:, None] < r[None, :]) | (s[:, None] > s[None, :])
    dominated = (no_worse & better).any(axis=0)
    mask = np.zeros(recon.shape, dtype=bool)
    mask[np.flatnonzero(ok)] = ~dominated
    return mask


def eta_squared(values: np.ndarray, labels: np.ndarray) -> float:
    """One-way ANOVA share of variance between groups, SS_between / SS_total, over finite values.

    NaN where it says nothing: fewer than two groups, no group with two values
    (nothing is left to the seed), or no variance at all.
    """
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    v, g = values[ok], np.asarray(labels)[ok]
    groups, g = np.unique(g, return_inverse=True)
    if groups.size < 2 or v.size - groups.size < 1:
        return float("nan")
    total = ((v - v.mean()) ** 2).sum()
    if total <= 0:
        return float("nan")
    counts = np.bincount(g)
    means = np.bincount(g, weights=v) / counts
    between = (counts * (means - v.mean()) ** 2).sum()
    return float(between / total)


def variance_shares(table: pa.Table, scores: Sequence[str]) -> pa.Table:
    """Per objective and score: eta squared among the objective's configurations (the configuration's
    share of the score's variance within that objective) and the share left to the seed."""
    keys, labels = configurations(table)
    rows = []
    for tradeoff in tradeoffs(keys):
        members = rows_of(keys, labels, tradeoff.configurations)
        for score in scores:
            eta = eta_squared(column(table, score)[members], labels[members])
            rows.append(
                {
                    "objective": tradeoff.name,
                    "metric": score,
                    "configurations": len(tradeoff.configurations),
                    "configuration_share": None if np.isnan(eta) else eta,
                    "seed_share": None if np.isnan(eta) else 1 - eta,
                }
            )
    schema = pa.schema(
        [("objective", pa.string()), ("metric", pa.string()), ("configurations", pa.int64())]
        + [(name, pa.float64()) for name in ("configuration_share", "seed_share")]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def rank_correlations(table: pa.Table, scores: Sequence[str]) -> np.ndarray:
    """Spearman correlation of every pair of scores over the trials that reported both; NaN when undefined
    (fewer than 3 such trials, or a constant score)."""
    values = [column(table, s) for s in scores]
    n = len(scores)
    matrix = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(i, n):
            matrix[i, j] = matrix[j, i] = spearman(values[i], values[j])
    return matrix


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation over the rows where both are finite; NaN when undefined (fewer than 3 such
    rows, or a constant)."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if ok.sum() < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a, b).statistic)


# -- the picks ----------------------------------------------------------------------------


def select(table: pa.Table, by: str, maximize: bool = True, study: Study | None = None) -> Picks:
    """Every pick over the finished trials of `table` by the score `by`.

    - trade-off: each configuration's median-seed run; those of the
      configurations on their objective's Pareto front of median recon vs
      median score also get the role `pareto`, and in a sweep of several
      objectives those on the front of all configurations `pareto_overall`;
    - seed sensitivity: each configuration's best, median and worst seed;
    - UDR ranking (when the table has a `udr` column): each configuration's
      seed with the highest UDR;
    - with the sweep's Optuna `study`, the configurations on its front.
    """
    table = finished(table)
    require_score(table, by)
    keys, labels = configurations(table)
    run_ids = table["run_id"].to_pylist()
    seeds, score, recon, udr = (optional_column(table, name) for name in ("seed", by, RECON, UDR))

    def pick(kind: str, role: str, row: int, values: np.ndarray) -> Pick:
        return Pick(kind, role, run_ids[row], keys[labels[row]], int(seeds[row]), float(values[row]))

    tradeoff, sensitivity, ranking = [], [], []
    medians: dict[Configuration, tuple[int, float, float]] = {}  # median-seed row, median recon, median score
    for index, key in enumerate(keys):
        rows = np.flatnonzero(labels == index)
        if np.isfinite(udr[rows]).any():
            ranking.append(pick(UDR_RANKING, TOP_UDR, rows[best_index(udr[rows], seeds[rows])], udr))
        if not np.isfinite(score[rows]).any():
            continue
        median = rows[median_index(score[rows], seeds[rows])]
        tradeoff.append(pick(TRADEOFF, MEDIAN_SEED, median, score))
        sensitivity += [
            pick(SEED_SENSITIVITY, BEST_SEED, rows[best_index(score[rows], seeds[rows], maximize)], score),
            pick(SEED_SENSITIVITY, MEDIAN_SEED, median, score),
            pick(SEED_SENSITIVITY, WORST_SEED, rows[worst_index(score[rows], seeds[rows], maximize)], score),
        ]
        medians[key] = (median, nan_median(recon[rows]), nan_median(score[rows]))

    def front(among: Sequence[Configuration], role: str) -> list[Pick]:
        among = [key for key in among if key in medians]
        on = pareto_front(np.array([medians[k][1] for k in among]), np.array([medians[k][2] for k in among]), maximize)
        return [pick(TRADEOFF, role, medians[among[i]][0], score) for i in np.flatnonzero(on)]

    groups = tradeoffs(keys)
    pareto = [p for group in groups for p in front(group.configurations, PARETO)]
    overall = front(keys, PARETO_OVERALL) if len(groups) > 1 else []
    study_front = None if study is None else frozenset(key for key in keys if study.on_front(key))
    return Picks(by, maximize, tuple(tradeoff + pareto + overall + sensitivity + ranking), study_front)


def tradeoff_tables(table: pa.Table, picks: Picks) -> list[tuple[TradeOff, pa.Table]]:
    """Each objective's trade-off, one row per configuration along its swept weight: the weights, seeds,
    median recon and score, its median-seed run, whether it is on its objective's Pareto front (and, for
    several objectives, on the front of all), and for an Optuna sweep whether on the study's front."""
    table = finished(table)
    keys, labels = configurations(table)
    score, recon = optional_column(table, picks.by), optional_column(table, RECON)
    medians = {p.configuration: p for p in picks.of(TRADEOFF, MEDIAN_SEED)}
    fronts = {role: {p.run_id for p in picks.of(TRADEOFF, role)} for role in (PARETO, PARETO_OVERALL)}
    groups = tradeoffs(keys)
    out = []
    for group in groups:
        rows = []
        for key in group.configurations:
            members = rows_of(keys, labels, [key])
            median = medians.get(key)
            on = {role: median is not None and median.run_id in runs for role, runs in fronts.items()}
            weights = dict(key.weights)
            rows.append(
                {
                    **({group.swept: weights.pop(group.swept)} if group.swept else {}),
                    **weights,
                    "seeds": int(members.sum()),
                    "recon_median": nan_median(recon[members]),
                    "score_median": nan_median(score[members]),
                    "median_seed": median.seed if median else None,
                    "median_run_id": median.run_id if median else None,
                    PARETO: on[PARETO],
                    **({PARETO_OVERALL: on[PARETO_OVERALL]} if len(groups) > 1 else {}),
                    **({} if picks.study_front is None else {"study_front": key in picks.study_front}),
                }
            )
        out.append((group, pa.Table.from_pylist(rows)))
    return out


def nan_median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


# -- the picks as tables ------------------------------------------------------------------


def picks_table(picks: Picks, kind: str | None = None) -> pa.Table:
    """The picks (of one kind, or all) as rows: kind, role, run id, objective, configuration, seed, value."""
    rows = [
        {
            "kind": p.kind,
            "role": p.role,
            "run_id": p.run_id,
            "objective": p.configuration.objective,
            "configuration": p.configuration.label(),
            "seed": p.seed,
            "value": p.value,
        }
        for p in picks.items
        if kind in (None, p.kind)
    ]
    return pa.Table.from_pylist(rows, schema=PICK_SCHEMA)


def seed_table(picks: Picks) -> pa.Table:
    """The seed sensitivity, one row per configuration: best, median and worst seed with their scores,
    and the spread between best and worst."""
    rows: dict[Configuration, dict] = {}
    for p in picks.of(SEED_SENSITIVITY):
        c = p.configuration
        row = rows.setdefault(c, {"objective": c.objective, "configuration": c.label()})
        prefix = p.role.removesuffix("_seed")
        row[f"{prefix}_seed"], row[prefix] = p.seed, p.value
    for row in rows.values():
        row["spread"] = abs(row["best"] - row["worst"])
    return pa.Table.from_pylist(list(rows.values()))


def with_picks(table: pa.Table, picks: Picks) -> pa.Table:
    """The table with its `selected` and `role` columns set to these picks (null for runs not picked)."""
    tags = picks.tags()
    run_ids = table["run_id"].to_pylist()
    for name in (SELECTED_TAG, PICK_ROLE_TAG):
        values = pa.array([tags.get(run, {}).get(name) for run in run_ids], pa.string())
        table = table.set_column(table.column_names.index(name), name, values)
    return table
