"""Modularity and explicitness (Ridgeway & Zemel 2018), as disentanglement_lib defines them.

Modularity asks whether each latent depends on at most one factor: with m the
discretised mutual-information matrix of the train codes (as for MIG),
theta_d = max_k m[d, k]^2, delta_d = (sum_k m[d, k]^2 - theta_d) / (theta_d (K - 1))
and score_d = 1 - delta_d (0 for a latent with no information); modularity is
the mean over latents.

Explicitness asks whether each factor can be read off the codes linearly:
codes are standardised with the train split's mean and std, a logistic
regression (library defaults) per factor predicts its classes, and the score
is the macro ROC AUC of the predicted class probabilities against the one-hot
factor, averaged over factors, on the train and the test split.

The logistic regression is scikit-learn's current default (lbfgs,
multinomial); the 2019 study ran before scikit-learn 0.22, whose default was
liblinear one-vs-rest.

Deliberate differences from the reference, each where it would fail or
mislabel:
- A latent that is constant on the train split is standardised with std 1
  (it stays 0) instead of divided by zero.
- The one-hot targets are built over the classifier's classes, so a class
  missing from one split cannot shift the columns against the predicted
  probabilities, and a class that has no positives or no negatives in the
  split (no AUC exists) is left out of the macro average. When both splits
  hold the same classes this is exactly the reference's computation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trainables.metrics._common import MetricInputs, MetricSpec, as_splits, require_varied
from trainables.metrics.mig import discrete_mutual_info, discretize

METRIC = "Modularity/explicitness"
SCORES = ("modularity", "explicitness_train", "explicitness_test")


def modularity_explicitness(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    num_bins: int = 20,
) -> dict[str, float]:
    """Modularity of the train codes, and explicitness on the train and test split."""
    codes_train, factors_train, codes_test, factors_test = as_splits(
        codes_train, factors_train, codes_test, factors_test, METRIC, min_test_rows=2
    )
    if factors_train.shape[1] < 2:
        raise ValueError(f"{METRIC}: modularity compares factors, needs at least two, got K=1")
    require_varied(factors_train, METRIC, "factors_train")
    require_varied(factors_test, METRIC, "factors_test")

    mutual_info = discrete_mutual_info(discretize(codes_train, num_bins), factors_train)
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std[std == 0] = 1.0
    train_x, test_x = (codes_train - mean) / std, (codes_test - mean) / std
    per_factor = np.array(
        [
            explicitness_per_factor(train_x, factors_train[:, k], test_x, factors_test[:, k])
            for k in range(factors_train.shape[1])
        ]
    )
    return dict(zip(SCORES, (modularity(mutual_info), float(per_factor[:, 0].mean()), float(per_factor[:, 1].mean()))))


def modularity(mutual_info: np.ndarray) -> float:
    """Mean over latents of 1 - delta: the latent's squared information about the other factors,
    averaged over them, relative to that about its main factor (0 for an uninformative latent)."""
    squared = np.square(mutual_info)
    theta = squared.max(axis=1)
    informative = theta > 0
    scores = np.zeros(len(theta))
    delta = (squared[informative].sum(axis=1) - theta[informative]) / (theta[informative] * (squared.shape[1] - 1))
    scores[informative] = 1.0 - delta
    return float(scores.mean())


def explicitness_per_factor(
    train_x: np.ndarray, factor_train: np.ndarray, test_x: np.ndarray, factor_test: np.ndarray
) -> tuple[float, float]:
    """Macro ROC AUC of a logistic regression's class probabilities, on the train and the test split."""
    from sklearn.linear_model import LogisticRegression  # imported here: reading SPEC loads no scikit-learn

    model = LogisticRegression().fit(train_x, factor_train)
    return (
        _macro_auc(factor_train, model.predict_proba(train_x), model.classes_),
        _macro_auc(factor_test, model.predict_proba(test_x), model.classes_),
    )


def _macro_auc(factor: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes that have both positives and negatives here."""
    one_hot = (factor[:, None] == classes[None, :]).astype(np.int64)
    positives = one_hot.sum(axis=0)
    scorable = (positives > 0) & (positives < len(factor))
    if not scorable.any():
        raise ValueError(f"{METRIC}: no class of a factor has both positives and negatives to score an AUC on")
    from sklearn.metrics import roc_auc_score  # imported here: reading SPEC loads no scikit-learn

    return float(np.mean([roc_auc_score(one_hot[:, j], probabilities[:, j]) for j in np.flatnonzero(scorable)]))


def _evaluate(inputs: MetricInputs, sizes: Mapping[str, int]) -> dict[str, float]:
    return modularity_explicitness(*inputs.train_and_test(sizes, METRIC), num_bins=sizes["num_bins"])


SPEC = MetricSpec(
    name="modularity",
    scores=SCORES,
    sizes={"num_train": 10000, "num_test": 5000, "num_bins": 20},
    evaluate=_evaluate,
    splits=("train", "test"),
)
