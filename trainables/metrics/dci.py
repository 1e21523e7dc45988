"""Disentanglement, completeness and informativeness (Eastwood & Williams 2018), as disentanglement_lib defines them.

For each factor k a gradient-boosted tree classifier (scikit-learn defaults)
predicts k from the codes; R[d, k] = |feature_importances_[d]|. Disentanglement
weighs each latent's 1 - entropy(R[d, :]) (base K) by its share of the total
importance; completeness does the same for each factor's 1 - entropy(R[:, k])
(base D). Informativeness is the classifiers' mean accuracy (the reference
reports accuracies under this name, not errors).

The classifier is `backend`: "exact" (default) is `boosting.ExactBoosting`,
scikit-learn's trees built by compiled code, the same splits and leaf values,
faster; "sklearn" is scikit-learn's own `GradientBoostingClassifier`,
kept to check the other against. Parallelism: the exact fits run one after
the other, each growing the trees of a stage on n_jobs threads (that balances
the work; the factors differ 13-fold in trees); scikit-learn's fits run in
parallel processes (its boosting loop runs Python between trees and would
serialise on the GIL in threads), the factors with the most classes (one
tree per class and stage) first, so the slowest fit is not left alone at the end.

Deliberate differences from the reference: none in the definition. The
classifiers get a fixed random_state drawn from `rng` (the reference leaves
them unseeded), which only decides ties between equally good splits. With
fewer than two factors or latents the entropy base would be 1, so that input
is refused rather than scored nan.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from joblib import Parallel, delayed

from trainables.metrics._common import MetricInputs, MetricSpec, as_splits, require_varied, resolve_n_jobs, seed_from

METRIC = "DCI"
BACKENDS = ("exact", "sklearn")
SCORES = ("dci_disentanglement", "dci_completeness", "dci_informativeness_train", "dci_informativeness_test")


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    rng: np.random.Generator,
    n_jobs: int | None = None,
    backend: str = "exact",
) -> dict[str, float]:
    """DCI scores from one gradient-boosted classifier per factor; n_jobs=None uses every core."""
    if backend not in BACKENDS:
        raise ValueError(f"{METRIC}: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    codes_train, factors_train, codes_test, factors_test = as_splits(
        codes_train, factors_train, codes_test, factors_test, METRIC
    )
    num_latents, num_factors = codes_train.shape[1], factors_train.shape[1]
    if num_latents < 2 or num_factors < 2:
        raise ValueError(
            f"{METRIC}: needs at least two latents and two factors (entropy bases D and K), "
            f"got D={num_latents}, K={num_factors}"
        )
    require_varied(factors_train, METRIC, "factors_train")

    seed = seed_from(rng)
    num_classes = [np.unique(factors_train[:, k]).size for k in range(num_factors)]
    order = np.argsort(num_classes, kind="stable")[::-1]
    jobs = resolve_n_jobs(n_jobs)
    if backend == "exact":
        threads = None if jobs < 1 else jobs  # joblib's -1, every core, is numba's default
        fits = [
            _fit_factor(codes_train, factors_train[:, k], codes_test, factors_test[:, k], seed, backend, threads)
            for k in order
        ]
    else:
        fits = Parallel(n_jobs=jobs)(
            delayed(_fit_factor)(codes_train, factors_train[:, k], codes_test, factors_test[:, k], seed, backend)
            for k in order
        )
    importance = np.zeros((num_latents, num_factors))
    train_accuracy, test_accuracy = np.zeros(num_factors), np.zeros(num_factors)
    for k, (factor_importance, train_k, test_k) in zip(order, fits):
        importance[:, k], train_accuracy[k], test_accuracy[k] = factor_importance, train_k, test_k
    scores = (disentanglement(importance), completeness(importance), train_accuracy.mean(), test_accuracy.mean())
    return dict(zip(SCORES, map(float, scores)))


def disentanglement(importance: np.ndarray) -> float:
    """Importance-weighted mean over latents of 1 - entropy of the latent's importances (base K)."""
    per_latent = 1.0 - _entropy(importance.T + 1e-11, base=importance.shape[1])
    weighting = _weighting(importance)
    weights = weighting.sum(axis=1) / weighting.sum()
    return float(np.sum(per_latent * weights))


def completeness(importance: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - entropy of the factor's importances (base D)."""
    per_factor = 1.0 - _entropy(importance + 1e-11, base=importance.shape[0])
    weighting = _weighting(importance)
    weights = weighting.sum(axis=0) / weighting.sum()
    return float(np.sum(per_factor * weights))


def _entropy(distributions: np.ndarray, base: int) -> np.ndarray:
    import scipy.stats  # imported here: reading SPEC loads no scipy.stats

    return scipy.stats.entropy(distributions, base=base)


def _weighting(importance: np.ndarray) -> np.ndarray:
    """The importances that weigh the entropies: all-zero importances count as uniform, as in the reference."""
    return np.ones_like(importance) if importance.sum() == 0.0 else importance


def _fit_factor(
    codes_train: np.ndarray,
    factor_train: np.ndarray,
    codes_test: np.ndarray,
    factor_test: np.ndarray,
    seed: int,
    backend: str,
    threads: int | None = None,
) -> tuple[np.ndarray, float, float]:
    """One factor's importances over the latents and the classifier's train and test accuracy."""
    if backend == "exact":  # imported here: reading SPEC loads no numba
        from trainables.metrics.boosting import ExactBoosting

        model = ExactBoosting(random_state=seed, n_threads=threads).fit(codes_train, factor_train)
    else:  # imported here: reading SPEC loads no scikit-learn
        from sklearn.ensemble import GradientBoostingClassifier

        model = GradientBoostingClassifier(random_state=seed).fit(codes_train, factor_train)
    return (
        np.abs(model.feature_importances_),
        float(np.mean(model.predict(codes_train) == factor_train)),
        float(np.mean(model.predict(codes_test) == factor_test)),
    )


def _evaluate(inputs: MetricInputs, sizes: Mapping[str, int]) -> dict[str, float]:
    return dci(*inputs.train_and_test(sizes, METRIC), inputs.generator(METRIC), n_jobs=inputs.n_jobs, backend=inputs.dci_backend)


SPEC = MetricSpec(
    name="dci",
    scores=SCORES,
    sizes={"num_train": 10000, "num_test": 5000},
    evaluate=_evaluate,
    splits=("train", "test"),
)
