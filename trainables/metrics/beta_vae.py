"""BetaVAE score (Higgins et al. 2017), as disentanglement_lib defines it.

One data point: pick a factor k uniformly, draw two batches of factor vectors,
copy column k of the first batch into the second so that each pair shares
factor k and nothing else on purpose, encode both, and take the mean over the
batch of |z1 - z2| as the feature; the label is k. A logistic regression
(library defaults) learns k from the features; the score is its accuracy on
fresh points.

Why every pair of a split is drawn in one array: the reference encodes two
batches per data point, 30000 small `represent` calls at the default sizes.
Here all factor vectors of a split are drawn at once, encoded with a single
call, and the features are a reshape and a mean. The draws have the
reference's distribution (k uniform, factors independent and uniform) but come
from the generator in a different order, so scores agree in distribution, not
draw for draw.

The classifier is scikit-learn's current default logistic regression (lbfgs,
multinomial). The 2019 study ran before scikit-learn 0.22, whose default was
liblinear one-vs-rest; both are L2-regularised with C=1 and usually close in
accuracy, but they are not the same classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from trainables.factors import sample_factors
from trainables.metrics._common import (
    MetricInputs,
    MetricSpec,
    Represent,
    encode,
    require_at_least,
    seed_from,
    varied_factor_sizes,
)

METRIC = "BetaVAE score"
SCORES = ("beta_vae_train", "beta_vae_eval")


def beta_vae_score(
    represent: Represent,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
) -> dict[str, float]:
    """Train and eval accuracy of predicting the shared factor from mean |z1 - z2|."""
    from sklearn.linear_model import LogisticRegression  # here, so that reading SPEC loads no scikit-learn

    sizes = varied_factor_sizes(factor_sizes, METRIC)
    if len(sizes) < 2:
        raise ValueError(f"{METRIC}: needs at least two factors to tell apart, got factor_sizes {sizes}")
    batch_size = require_at_least(batch_size, 1, METRIC, "batch_size")
    num_train = require_at_least(num_train, 2, METRIC, "num_train")
    num_eval = require_at_least(num_eval, 1, METRIC, "num_eval")

    train_x, train_y = _points(represent, sizes, rng, batch_size, num_train)
    if np.unique(train_y).size < 2:
        raise ValueError(f"{METRIC}: all {num_train} training points hold the same factor fixed; raise num_train")
    model = LogisticRegression(random_state=seed_from(rng)).fit(train_x, train_y)
    eval_x, eval_y = _points(represent, sizes, rng, batch_size, num_eval)
    return dict(zip(SCORES, (float(model.score(train_x, train_y)), float(model.score(eval_x, eval_y)))))


def _points(
    represent: Represent,
    sizes: tuple[int, ...],
    rng: np.random.Generator,
    batch_size: int,
    num_points: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (num_points, D) and labels (num_points,) of a split, from one `represent` call."""
    labels = rng.integers(len(sizes), size=num_points)
    num_pairs = num_points * batch_size
    factors = sample_factors(sizes, 2 * num_pairs, rng)  # first halves of the pairs, then second halves
    first, second = factors[:num_pairs], factors[num_pairs:]
    rows, shared = np.arange(num_pairs), np.repeat(labels, batch_size)
    second[rows, shared] = first[rows, shared]
    codes = encode(represent, factors, METRIC)
    diffs = np.abs(codes[:num_pairs] - codes[num_pairs:])
    return diffs.reshape(num_points, batch_size, -1).mean(axis=1), labels


def _evaluate(inputs: MetricInputs, sizes: Mapping[str, int]) -> dict[str, float]:
    return beta_vae_score(inputs.represent, inputs.factor_sizes, inputs.generator(METRIC), **sizes)


SPEC = MetricSpec(
    name="beta_vae",
    scores=SCORES,
    sizes={"batch_size": 64, "num_train": 10000, "num_eval": 5000},
    evaluate=_evaluate,
    needs_full_grid=True,
)
