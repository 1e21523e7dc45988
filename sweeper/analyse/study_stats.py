"""The analyses of a study across sweeps (Locatello et al. 2019): what a score depends on, and what transfers.

Pure functions over the study table (`sweeper.analyse.study_table`): one row
per finished model with its `dataset`, `objective`, hyperparameters, `seed`
and scores. (Not to be confused with `sweeper.analyse.study`, which reads a
sweep's Optuna study.) A configuration is an objective with one value of each
of its hyperparameters; its models differ only in the seed. Every analysis
runs per dataset: scores are not comparable across datasets.

- Variance shares: a score's sums of squares split, nested, into the
  objective's (between objective means), the hyperparameter's within the
  objective (between configuration means, around their objective's mean) and
  the seed's (around each configuration's mean); each over the total. With
  bootstrap intervals over the seeds: every configuration's models resampled
  with replacement, the interval the basic bootstrap's (2 x share minus the
  resamples' 97.5th and 2.5th percentiles). The seeds' noise reaches the
  configuration means, so a share from few seeds leans towards the
  hyperparameter; a resample leans once more, by as much, and the basic
  interval takes that lean back out where the percentiles would double it.
- Metric agreement: Spearman correlation of every pair of scores over the
  dataset's models.
- Unsupervised model selection: Spearman correlation of each unsupervised
  score and UDR with each supervised score, per dataset and objective; and the
  score got by taking each configuration's model with the highest UDR,
  against a random seed (the configuration's mean) and the best seed (the
  oracle).
- Transfer: the configuration best on one dataset (by its median over seeds)
  against a random other configuration on another dataset, as the
  probability that a model of the first beats a model of the second (ties
  count half); 0.5 is no better than a random choice. On one dataset, the
  same across seeds: the configuration best on one seed against the others
  on each other seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeper.analyse.selection import UDR, column, spearman
from sweeper.tags import WEIGHT_PARAMS as HYPERPARAMETERS
from trainables.metrics.unsupervised import SCORES as UNSUPERVISED_SCORES

DATASET, OBJECTIVE, SEED = "dataset", "objective", "seed"
UNSUPERVISED = tuple(f"disent/{name}" for name in UNSUPERVISED_SCORES) + (UDR,)
SHARES = ("objective", "hyperparameter", "seed")
BOOTSTRAP_CHUNK = 64  # replicates computed at once: a chunk holds this many copies of the scores
INTERVAL = (2.5, 97.5)  # percentiles of the bootstrap: a 95% interval


# -- configurations ---------------------------------------------------------------------


def hyperparameter_columns(table: pa.Table) -> list[str]:
    """The hyperparameter columns of the table that hold a value for some model."""
    return [h for h in HYPERPARAMETERS if h in table.column_names and table[h].null_count < table.num_rows]


def configuration_name(objective: str, values: dict[str, float | None]) -> str:
    """An objective and its hyperparameter values as the page prints it: `beta_vae beta=4`."""
    set_values = " ".join(f"{name}={value:g}" for name, value in values.items() if value is not None)
    return f"{objective} {set_values}".strip()


@dataclass(frozen=True)
class Configurations:
    """Each row's configuration, as an index into `names`, and each configuration's objective."""

    names: list[str]  # sorted by objective, then hyperparameter values
    objective_of: list[str]  # per configuration
    index: np.ndarray  # per row

    def objective_index(self) -> np.ndarray:
        """Per row, an index of its objective (in sorted order)."""
        objectives = sorted(set(self.objective_of))
        per_configuration = np.array([objectives.index(o) for o in self.objective_of], dtype=np.int64)
        return per_configuration[self.index]


def find_configurations(table: pa.Table) -> Configurations:
    """The configurations of the table's models: one per objective and hyperparameter values."""
    names = hyperparameter_columns(table)
    objectives = table[OBJECTIVE].to_pylist()
    values = list(zip(*(table[h].to_pylist() for h in names))) if names else [()] * table.num_rows
    keys = sorted(
        set(zip(objectives, values)),
        key=lambda key: (key[0], [(v is None, v if v is not None else 0.0) for v in key[1]]),
    )
    position = {key: i for i, key in enumerate(keys)}
    return Configurations(
        names=[configuration_name(o, dict(zip(names, v))) for o, v in keys],
        objective_of=[o for o, _ in keys],
        index=np.array([position[key] for key in zip(objectives, values)], dtype=np.int64),
    )


def datasets(table: pa.Table) -> list[str]:
    return sorted(set(table[DATASET].to_pylist()))


def of_dataset(table: pa.Table, dataset: str) -> pa.Table:
    return table.filter(pc.equal(table[DATASET], dataset))


# -- variance shares --------------------------------------------------------------------


def nested_shares(values: np.ndarray, objective: np.ndarray, configuration: np.ndarray) -> np.ndarray:
    """Shares (objective, hyperparameter, seed) of the sums of squares of `values`; they add up to 1.

    configuration: each row's configuration, nested in its objective (a
    configuration belongs to one objective). NaN where the values do not vary.
    """
    return _shares(*_grouped(values, objective, configuration), resampled=None)[0]


def bootstrap_shares(
    values: np.ndarray,
    objective: np.ndarray,
    configuration: np.ndarray,
    rng: np.random.Generator,
    replicates: int = 1000,
) -> np.ndarray:
    """Shares of `replicates` bootstrap samples (replicates, 3): each configuration's rows resampled."""
    grouped = _grouped(values, objective, configuration)
    out = []
    for start in range(0, replicates, BOOTSTRAP_CHUNK):
        out.append(_shares(*grouped, resampled=(rng, min(BOOTSTRAP_CHUNK, replicates - start))))
    return np.concatenate(out) if out else np.empty((0, 3))


def _grouped(values: np.ndarray, objective: np.ndarray, configuration: np.ndarray) -> tuple:
    """The finite values, centred and sorted by configuration; the configurations' starts, sizes and objectives."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    v, o, c = values[ok], np.asarray(objective)[ok], np.asarray(configuration)[ok]
    order = np.argsort(c, kind="stable")
    v, o, c = v[order], o[order], c[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if c.size else np.array([], dtype=np.int64)
    sizes = np.diff(np.r_[starts, c.size])
    _, config_objective = np.unique(o[starts], return_inverse=True)
    centred = v - v.mean() if v.size else v  # sums of squares do not move with a shift; rounding does
    return centred, starts, sizes, config_objective.reshape(-1)


def _shares(
    v: np.ndarray, starts: np.ndarray, sizes: np.ndarray, config_objective: np.ndarray, resampled
) -> np.ndarray:
    """Shares (rows, 3) for the values as they are (resampled None) or for (rng, count) resamples."""
    if v.size == 0:
        return np.full((1 if resampled is None else resampled[1], 3), np.nan)
    if resampled is None:
        sample = v[None, :]
    else:
        rng, count = resampled
        within = np.floor(rng.random((count, v.size)) * np.repeat(sizes, sizes)).astype(np.int64)
        sample = v[np.repeat(starts, sizes) + within]
    config_sums = np.add.reduceat(sample, starts, axis=1)
    config_means = config_sums / sizes
    membership = np.eye(config_objective.max() + 1)[config_objective]  # configuration x objective, one-hot
    objective_counts = sizes @ membership
    objective_sums = config_sums @ membership
    objective_means = objective_sums / objective_counts
    grand = sample.mean(axis=1, keepdims=True)
    total = ((sample - grand) ** 2).sum(axis=1)
    between_objectives = (objective_counts * (objective_means - grand) ** 2).sum(axis=1)
    within_objectives = (sizes * (config_means - objective_means[:, config_objective]) ** 2).sum(axis=1)
    seeds = ((sample - np.repeat(config_means, sizes, axis=1)) ** 2).sum(axis=1)
    shares = np.stack([between_objectives, within_objectives, seeds], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = shares / total[:, None]
    shares[total == 0] = np.nan
    return shares


def variance_shares(
    table: pa.Table, scores: Sequence[str], rng: np.random.Generator, replicates: int = 1000
) -> pa.Table:
    """Per dataset and score: the share of its variance of the objective, the hyperparameter within the
    objective and the seed, each with a bootstrap interval over the seeds."""
    rows = []
    for dataset in datasets(table):
        part = of_dataset(table, dataset)
        configs = find_configurations(part)
        objective = configs.objective_index()
        for score in scores:
            values = column(part, score)
            point = nested_shares(values, objective, configs.index)
            boot = bootstrap_shares(values, objective, configs.index, rng, replicates)
            finite = np.isfinite(values)
            row = {"dataset": dataset, "score": score, "models": int(finite.sum())}
            row["configurations"] = int(np.unique(configs.index[finite]).size)
            for i, share in enumerate(SHARES):
                row[share] = _float(point[i])
                row[f"{share}_low"], row[f"{share}_high"] = basic_interval(point[i], boot[:, i])
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=VARIANCE_SCHEMA)


VARIANCE_SCHEMA = pa.schema(
    [("dataset", pa.string()), ("score", pa.string()), ("models", pa.int64()), ("configurations", pa.int64())]
    + [(name, pa.float64()) for share in SHARES for name in (share, f"{share}_low", f"{share}_high")]
)


def basic_interval(point: float, resamples: np.ndarray) -> tuple[float | None, float | None]:
    """The basic bootstrap's interval for a share, clipped to [0, 1]; None where there is none."""
    finite = resamples[np.isfinite(resamples)]
    if finite.size == 0 or not math.isfinite(point):
        return None, None
    low, high = np.percentile(finite, INTERVAL)
    return float(np.clip(2 * point - high, 0, 1)), float(np.clip(2 * point - low, 0, 1))


def _float(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


# -- metric agreement and unsupervised selection ----------------------------------------


def spearman_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman correlation of every column of `first` (n, a) with every column of `second` (n, b).

    Columns without a missing value are ranked once and correlated as a matrix (a study compares tens of
    scores over thousands of models); a pair with a missing value is correlated over the rows both have.
    NaN where undefined, as `selection.spearman`.
    """
    import scipy.stats

    out = np.full((first.shape[1], second.shape[1]), np.nan)
    whole_first, whole_second = np.isfinite(first).all(axis=0), np.isfinite(second).all(axis=0)
    if first.shape[0] >= 3 and whole_first.any() and whole_second.any():
        ranks_first = scipy.stats.rankdata(first[:, whole_first], axis=0)
        ranks_second = scipy.stats.rankdata(second[:, whole_second], axis=0)
        centred_first = ranks_first - ranks_first.mean(axis=0)
        centred_second = ranks_second - ranks_second.mean(axis=0)
        norms = np.outer(np.linalg.norm(centred_first, axis=0), np.linalg.norm(centred_second, axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            block = (centred_first.T @ centred_second) / norms
        block[norms == 0] = np.nan  # a constant score
        out[np.ix_(whole_first, whole_second)] = np.clip(block, -1.0, 1.0)
    for i, j in zip(*np.nonzero(~np.outer(whole_first, whole_second))):
        out[i, j] = spearman(first[:, i], second[:, j])
    return out


def score_agreement(table: pa.Table, scores: Sequence[str]) -> dict[str, np.ndarray]:
    """Per dataset: the Spearman matrix of the scores over its models (NaN where undefined)."""
    out = {}
    for dataset in datasets(table):
        values = _columns(of_dataset(table, dataset), scores)
        out[dataset] = spearman_matrix(values, values)
    return out


def _columns(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """The columns as one float (rows, columns) array, NaN where null."""
    return np.column_stack([column(table, name) for name in names]) if names else np.empty((table.num_rows, 0))


def unsupervised_correlations(table: pa.Table, scores: Sequence[str]) -> pa.Table:
    """Per dataset and objective: Spearman correlation of each unsupervised score (and UDR) with each
    supervised score, over the models that have both."""
    unsupervised = [s for s in scores if s in UNSUPERVISED]
    supervised = [s for s in scores if s not in UNSUPERVISED]
    rows = []
    for dataset in datasets(table):
        part = of_dataset(table, dataset)
        objectives = np.array(part[OBJECTIVE].to_pylist(), dtype=object)
        u_values, s_values = _columns(part, unsupervised), _columns(part, supervised)
        for objective in sorted(set(objectives)):
            members = objectives == objective
            matrix = spearman_matrix(u_values[members], s_values[members])
            u_finite, s_finite = np.isfinite(u_values[members]), np.isfinite(s_values[members])
            for (i, u), (j, s) in itertools.product(enumerate(unsupervised), enumerate(supervised)):
                rows.append(
                    {
                        "dataset": dataset,
                        "objective": objective,
                        "unsupervised": u,
                        "supervised": s,
                        "models": int((u_finite[:, i] & s_finite[:, j]).sum()),
                        "spearman": _float(matrix[i, j]),
                    }
                )
    return pa.Table.from_pylist(rows, schema=CORRELATION_SCHEMA)


CORRELATION_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("objective", pa.string()),
        ("unsupervised", pa.string()),
        ("supervised", pa.string()),
        ("models", pa.int64()),
        ("spearman", pa.float64()),
    ]
)


def choose_by(
    chooser: np.ndarray, score: np.ndarray, seeds: np.ndarray, maximize: bool = True
) -> tuple[float, float, float]:
    """One configuration's models: the score of the one the chooser ranks highest (ties: lower seed),
    the mean score (a random seed) and the best score (the oracle)."""
    ok = np.isfinite(chooser) & np.isfinite(score)
    chooser, score, seeds = chooser[ok], score[ok], seeds[ok]
    top = np.flatnonzero(chooser == chooser.max())
    chosen = score[top[np.argmin(seeds[top])]]
    return float(chosen), float(score.mean()), float(score.max() if maximize else score.min())


def selection_by(table: pa.Table, chooser: str, score: str, maximize: bool = True) -> pa.Table:
    """Per dataset and objective, over its configurations (those with a model having both values):
    the mean score of the model the chooser picks, of a random seed, and of the best seed."""
    rows = []
    for dataset in datasets(table):
        part = of_dataset(table, dataset)
        configs = find_configurations(part)
        choose, values, seeds = column(part, chooser), column(part, score), column(part, SEED)
        by_objective: dict[str, list[tuple[float, float, float]]] = {}
        for index, objective in enumerate(configs.objective_of):
            members = (configs.index == index) & np.isfinite(choose) & np.isfinite(values)
            if members.any():
                by_objective.setdefault(objective, []).append(
                    choose_by(choose[members], values[members], seeds[members], maximize)
                )
        for objective, picks in sorted(by_objective.items()):
            chosen, random_seed, oracle = np.mean(picks, axis=0)
            rows.append(
                {
                    "dataset": dataset,
                    "objective": objective,
                    "configurations": len(picks),
                    "chosen": float(chosen),
                    "random_seed": float(random_seed),
                    "best_seed": float(oracle),
                }
            )
    return pa.Table.from_pylist(rows, schema=SELECTION_SCHEMA)


SELECTION_SCHEMA = pa.schema(
    [("dataset", pa.string()), ("objective", pa.string()), ("configurations", pa.int64())]
    + [(name, pa.float64()) for name in ("chosen", "random_seed", "best_seed")]
)


# -- transfer ---------------------------------------------------------------------------


def beats(first: np.ndarray, second: np.ndarray, maximize: bool = True) -> float:
    """Probability that a value drawn from `first` is better than one drawn from `second`; ties count half."""
    a, b = (first, second) if maximize else (-first, -second)
    b = np.sort(b)
    below = np.searchsorted(b, a, side="left")
    not_above = np.searchsorted(b, a, side="right")
    return float((below + 0.5 * (not_above - below)).sum() / (a.size * b.size))


def beats_random_other(values: dict[int, np.ndarray], best: int, maximize: bool = True) -> float:
    """Probability that a model of `best` beats a model of a configuration drawn uniformly from the others."""
    others = [c for c in values if c != best]
    return float(np.mean([beats(values[best], values[c], maximize) for c in others]))


def _best(summary: dict[int, float], maximize: bool) -> int:
    """The configuration with the best value; ties go to the first in the configurations' order."""
    sign = 1.0 if maximize else -1.0
    return min(summary, key=lambda c: (-sign * summary[c], c))


def _values_by_configuration(values: np.ndarray, index: np.ndarray) -> dict[int, np.ndarray]:
    ok = np.isfinite(values)
    return {int(c): values[ok & (index == c)] for c in np.unique(index[ok])}


def dataset_transfer(table: pa.Table, score: str, maximize: bool = True) -> pa.Table:
    """For each ordered pair of datasets: the configuration best on the first (median over seeds) and the
    probability that it beats a random other configuration on the second, over their common configurations."""
    configs = find_configurations(table)
    values = column(table, score)
    dataset_of = np.array(table[DATASET].to_pylist(), dtype=object)
    per_dataset = {
        d: _values_by_configuration(values[dataset_of == d], configs.index[dataset_of == d]) for d in datasets(table)
    }
    rows = []
    for source, source_values in per_dataset.items():
        for target, target_values in per_dataset.items():
            if source == target:
                continue
            common = sorted(set(source_values) & set(target_values))
            if len(common) < 2:
                continue
            best = _best({c: float(np.median(source_values[c])) for c in common}, maximize)
            rows.append(
                {
                    "from_dataset": source,
                    "to_dataset": target,
                    "configurations": len(common),
                    "best_configuration": configs.names[best],
                    "probability": beats_random_other({c: target_values[c] for c in common}, best, maximize),
                }
            )
    return pa.Table.from_pylist(rows, schema=TRANSFER_SCHEMA)


TRANSFER_SCHEMA = pa.schema(
    [
        ("from_dataset", pa.string()),
        ("to_dataset", pa.string()),
        ("configurations", pa.int64()),
        ("best_configuration", pa.string()),
        ("probability", pa.float64()),
    ]
)


def seed_transfer(table: pa.Table, score: str, maximize: bool = True) -> pa.Table:
    """Per dataset: for each ordered pair of seeds, the configuration best on the first seed against a
    random other configuration on the second (one model each; several of a seed are averaged); the mean
    over the pairs, and its lowest and highest."""
    rows = []
    for dataset in datasets(table):
        part = of_dataset(table, dataset)
        configs = find_configurations(part)
        values, seeds = column(part, score), column(part, SEED)
        ok = np.isfinite(values) & np.isfinite(seeds)
        seed_values, seed_index = np.unique(seeds[ok], return_inverse=True)
        # by_seed[s, c]: configuration c's value on seed s (the mean of its models there), NaN without one
        sums = np.zeros((seed_values.size, len(configs.names)))
        counts = np.zeros_like(sums)
        np.add.at(sums, (seed_index, configs.index[ok]), values[ok])
        np.add.at(counts, (seed_index, configs.index[ok]), 1)
        with np.errstate(invalid="ignore"):
            by_seed = sums / counts
        probabilities = []
        for chosen_on in range(seed_values.size):
            candidates = np.isfinite(by_seed[chosen_on])
            if candidates.sum() < 2:
                continue
            best = _best({int(c): by_seed[chosen_on, c] for c in np.flatnonzero(candidates)}, maximize)
            for other in range(seed_values.size):
                others = np.delete(by_seed[other], best)
                others = others[np.isfinite(others)]
                if other == chosen_on or not np.isfinite(by_seed[other, best]) or others.size == 0:
                    continue
                probabilities.append(beats(by_seed[other, best : best + 1], others, maximize))
        rows.append(
            {
                "dataset": dataset,
                "seeds": int(seed_values.size),
                "seed_pairs": len(probabilities),
                "probability": float(np.mean(probabilities)) if probabilities else None,
                "lowest": float(np.min(probabilities)) if probabilities else None,
                "highest": float(np.max(probabilities)) if probabilities else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=SEED_TRANSFER_SCHEMA)


SEED_TRANSFER_SCHEMA = pa.schema(
    [("dataset", pa.string()), ("seeds", pa.int64()), ("seed_pairs", pa.int64())]
    + [(name, pa.float64()) for name in ("probability", "lowest", "highest")]
)
