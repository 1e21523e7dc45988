"""Input checks and small pieces shared by the metric modules.

Every metric refuses degenerate input with a ValueError that names the metric
and the problem, instead of letting it surface later as a division by zero, a
nan score or an opaque scikit-learn error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trainables.factors import check_factor_sizes, sample_factors

Represent = Callable[[np.ndarray], np.ndarray]
"""Maps an int (n, K) array of factor vectors to the (n, D) codes of their observations."""


def as_codes(codes: np.ndarray, metric: str, name: str = "codes", min_rows: int = 2) -> np.ndarray:
    """Return codes as a float (n, D) array, refusing shapes and values no metric can use."""
    arr = np.asarray(codes, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{metric}: {name} must be a 2-D (n, D) array, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{metric}: {name} has no latent dimensions (shape {arr.shape})")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{metric}: {name} has {arr.shape[0]} rows, needs at least {min_rows}")
    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"{metric}: {name} contains {bad} non-finite values (nan or inf)")
    return arr


def as_factors(factors: np.ndarray, num_rows: int, metric: str, name: str = "factors") -> np.ndarray:
    """Return factors as an int (n, K) array of class indices with n matching the codes."""
    arr = np.asarray(factors)
    if arr.ndim != 2:
        raise ValueError(f"{metric}: {name} must be a 2-D (n, K) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{metric}: {name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise ValueError(f"{metric}: {name} has no factors (shape {arr.shape})")
    if arr.shape[0] != num_rows:
        raise ValueError(f"{metric}: {name} has {arr.shape[0]} rows but the codes have {num_rows}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{metric}: {name} holds negative class indices")
    return arr.astype(np.int64, copy=False)


def as_splits(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    metric: str,
    min_test_rows: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check a train and a test split of (codes, factors) that must agree in their widths."""
    codes_train = as_codes(codes_train, metric, "codes_train")
    factors_train = as_factors(factors_train, codes_train.shape[0], metric, "factors_train")
    codes_test = as_codes(codes_test, metric, "codes_test", min_rows=min_test_rows)
    factors_test = as_factors(factors_test, codes_test.shape[0], metric, "factors_test")
    if codes_test.shape[1] != codes_train.shape[1] or factors_test.shape[1] != factors_train.shape[1]:
        raise ValueError(
            f"{metric}: train and test splits differ in width: codes {codes_train.shape[1]} vs "
            f"{codes_test.shape[1]}, factors {factors_train.shape[1]} vs {factors_test.shape[1]}"
        )
    return codes_train, factors_train, codes_test, factors_test


def require_varied(factors: np.ndarray, metric: str, name: str = "factors") -> None:
    """Refuse a factor that takes a single value in the sample: nothing can be learnt about it."""
    for k in range(factors.shape[1]):
        if np.unique(factors[:, k]).size < 2:
            raise ValueError(
                f"{metric}: factor {k} takes a single value in {name}; the metric needs at least two"
            )


def varied_factor_sizes(factor_sizes: Sequence[int], metric: str) -> tuple[int, ...]:
    """Return the sizes, refusing a factor with a single value (it cannot be varied or held fixed)."""
    sizes = check_factor_sizes(factor_sizes)
    single = [k for k, s in enumerate(sizes) if s < 2]
    if single:
        raise ValueError(
            f"{metric}: factor {single[0]} has a single value (factor_sizes {sizes}); "
            "every factor needs at least two"
        )
    return sizes


def require_at_least(value: int, minimum: int, metric: str, name: str) -> int:
    """Refuse a sample-size argument below what the metric's estimator needs."""
    if int(value) != value or value < minimum:
        raise ValueError(f"{metric}: {name} must be an integer >= {minimum}, got {value}")
    return int(value)


def encode(represent: Represent, factors: np.ndarray, metric: str) -> np.ndarray:
    """Call the caller's representation once and check what comes back."""
    codes = as_codes(represent(factors), metric, name="represent() output", min_rows=1)
    if codes.shape[0] != factors.shape[0]:
        raise ValueError(
            f"{metric}: represent() returned {codes.shape[0]} codes for {factors.shape[0]} factor vectors"
        )
    return codes


def top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Largest minus second largest entry of each column (the 'gap' of MIG and SAP)."""
    ordered = np.sort(matrix, axis=0)
    return ordered[-1] - ordered[-2]


def resolve_n_jobs(n_jobs: int | None) -> int:
    """None means every core, the right default for the handful of independent fits a metric runs."""
    return -1 if n_jobs is None else int(n_jobs)


def seed_from(rng: np.random.Generator) -> int:
    """A scikit-learn random_state drawn from the metric's generator, so one seed fixes everything."""
    return int(rng.integers(2**31 - 1))


Sample = Callable[[int], tuple[np.ndarray, np.ndarray]]
"""The first n rows of a shared sample: (codes (n, D), factor class indices (n, K))."""

SampleFactors = Callable[[int, np.random.Generator], np.ndarray]
"""Draws n factor vectors (n, K) as the dataset samples them (only the cells it has, for an incomplete grid)."""

UNSCALED_SIZES = frozenset({"batch_size", "num_bins"})  # sizes the `fast` preset keeps


@dataclass(frozen=True)
class MetricInputs:
    """Everything an evaluation offers a metric; each metric reads what its spec says it needs.

    One calling convention for all metrics, as disentanglement_lib's
    `evaluation_fn(ground_truth_data, representation_function, random_state)`.
    """

    represent: Represent
    factor_sizes: tuple[int, ...]
    rng: np.random.Generator | None = None  # the metric's own stream, for the metrics that draw
    train: Sample | None = None  # the shared train sample
    test: Sample | None = None  # the shared test sample
    n_jobs: int | None = None  # parallel fits (DCI, SAP)
    dci_backend: str = "exact"  # DCI's classifier: "exact" or "sklearn"
    sample_factors: SampleFactors | None = None  # the dataset's sampler; None: uniform over factor_sizes

    def split(self, name: str, metric: str) -> Sample:
        sample = self.train if name == "train" else self.test
        if sample is None:
            raise ValueError(f"{metric} reads the shared {name} sample, and none was given")
        return sample

    def train_and_test(self, sizes: Mapping[str, int], metric: str) -> tuple[np.ndarray, ...]:
        """(codes_train, factors_train, codes_test, factors_test) at the metric's num_train and num_test."""
        return (*self.split("train", metric)(sizes["num_train"]), *self.split("test", metric)(sizes["num_test"]))

    def draw_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor vectors drawn as the dataset draws them; without its sampler, each factor uniform,
        which is the same for a full grid."""
        if self.sample_factors is None:
            return sample_factors(self.factor_sizes, n, rng)
        return self.sample_factors(n, rng)

    def generator(self, metric: str) -> np.random.Generator:
        if self.rng is None:
            raise ValueError(f"{metric} draws random numbers, and no generator was given")
        return self.rng


@dataclass(frozen=True)
class MetricSpec:
    """What one metric is: its scores, its sample sizes, what it reads, and how it is called.

    sizes are the reference study's; the `fast` preset is a tenth of each,
    except batch sizes and bin counts. splits names the shared samples it
    reads ("train", "test"); needs_full_grid: it draws factor vectors over the
    whole grid and needs every cell of it; in_default: it runs when a config
    names no metrics (False for a metric whose cost would dominate every
    evaluation: a config asks for it by name).
    """

    name: str
    scores: tuple[str, ...]
    sizes: Mapping[str, int]
    evaluate: Callable[[MetricInputs, Mapping[str, int]], dict[str, float]]
    splits: tuple[str, ...] = ()
    needs_full_grid: bool = False
    in_default: bool = True

    def preset(self, preset: str) -> dict[str, int]:
        """The sample sizes of a preset: "reference" or "fast"."""
        if preset == "reference":
            return dict(self.sizes)
        if preset == "fast":
            return {key: value if key in UNSCALED_SIZES else value // 10 for key, value in self.sizes.items()}
        raise ValueError(f"unknown preset {preset!r}; known: reference, fast")
