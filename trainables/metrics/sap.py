"""Separated attribute predictability, SAP (Kumar et al. 2018), as disentanglement_lib defines it.

S[d, k] is how well latent d alone predicts factor k: the test accuracy of a
linear SVM (C=0.01, balanced class weights) fitted on the single column z_d.
SAP = mean over factors of the gap between the two best latents, so it is
high when each factor is captured by one latent only.

The D * K fits are independent, so they run in parallel with joblib, in
threads: each fit is small (about 0.1 s at the default sizes), the solver
releases the GIL, and threads start at once where worker processes would first
have to be spawned and import scikit-learn, which costs more than the fits.

Deliberate differences from the reference: the classifiers get a fixed
random_state (the reference leaves them unseeded); with the library's current
default `dual="auto"` they use the deterministic primal solver for the same
problem the reference's dual solver solves (the optimum is unique).
`sap_continuous` reports under its own key so both variants can be logged.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from joblib import Parallel, delayed

from trainables.metrics._common import (
    MetricInputs,
    MetricSpec,
    as_codes,
    as_splits,
    require_varied,
    resolve_n_jobs,
    top_two_gap,
)

METRIC = "SAP"
SCORES = ("sap",)


def sap(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    n_jobs: int | None = None,
) -> dict[str, float]:
    """SAP with discrete factors: gaps in single-latent classification accuracy; n_jobs=None uses every core."""
    codes_train, factors_train, codes_test, factors_test = as_splits(
        codes_train, factors_train, codes_test, factors_test, METRIC
    )
    _require_two_latents(codes_train)
    require_varied(factors_train, METRIC, "factors_train")

    num_latents, num_factors = codes_train.shape[1], factors_train.shape[1]
    pairs = [(d, k) for d in range(num_latents) for k in range(num_factors)]
    accuracies = Parallel(n_jobs=resolve_n_jobs(n_jobs), prefer="threads")(
        delayed(_single_latent_accuracy)(codes_train[:, d], factors_train[:, k], codes_test[:, d], factors_test[:, k])
        for d, k in pairs
    )
    scores = np.array(accuracies).reshape(num_latents, num_factors)
    return dict(zip(SCORES, (float(np.mean(top_two_gap(scores))),)))


def sap_continuous(codes: np.ndarray, factor_values: np.ndarray) -> dict[str, float]:
    """SAP with continuous factors: S[d, k] is the squared correlation of z_d and v_k (0 for a constant z_d)."""
    codes = as_codes(codes, METRIC)
    values = as_codes(factor_values, METRIC, "factor_values")
    if values.shape[0] != codes.shape[0]:
        raise ValueError(f"{METRIC}: factor_values has {values.shape[0]} rows but the codes have {codes.shape[0]}")
    _require_two_latents(codes)
    code_dev, value_dev = codes - codes.mean(axis=0), values - values.mean(axis=0)
    ddof = codes.shape[0] - 1
    code_var, value_var = (code_dev**2).sum(axis=0) / ddof, (value_dev**2).sum(axis=0) / ddof
    if np.any(value_var == 0):
        raise ValueError(f"{METRIC}: factor {int(np.argmin(value_var))} takes a single value in factor_values")
    covariance = code_dev.T @ value_dev / ddof
    live = code_var > 1e-12
    scores = np.zeros_like(covariance)
    scores[live] = covariance[live] ** 2 / np.outer(code_var[live], value_var)
    return {"sap_continuous": float(np.mean(top_two_gap(scores)))}


def _require_two_latents(codes: np.ndarray) -> None:
    """The score is a gap between the two best latents, so there must be two."""
    if codes.shape[1] < 2:
        raise ValueError(f"{METRIC}: needs at least two latents to take a gap, got D={codes.shape[1]}")


def _single_latent_accuracy(
    latent_train: np.ndarray, factor_train: np.ndarray, latent_test: np.ndarray, factor_test: np.ndarray
) -> float:
    """Test accuracy of a linear SVM predicting one factor from one latent."""
    from sklearn.svm import LinearSVC  # imported here: reading SPEC loads no scikit-learn

    model = LinearSVC(C=0.01, class_weight="balanced", random_state=0)
    model.fit(latent_train[:, None], factor_train)
    return float(np.mean(model.predict(latent_test[:, None]) == factor_test))


def _evaluate(inputs: MetricInputs, sizes: Mapping[str, int]) -> dict[str, float]:
    return sap(*inputs.train_and_test(sizes, METRIC), n_jobs=inputs.n_jobs)


SPEC = MetricSpec(
    name="sap",
    scores=SCORES,
    sizes={"num_train": 10000, "num_test": 5000},
    evaluate=_evaluate,
    splits=("train", "test"),
)
