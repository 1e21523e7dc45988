"""Downstream task: every score against scikit-learn's models fitted here, on the same codes and splits."""

import warnings

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import KFold

from trainables.factors import sample_factors
from trainables.metrics import SPEC_BY_NAME, MetricInputs, downstream_task
from trainables.metrics._common import seed_from
from trainables.metrics.downstream import SCORES, TRAIN_SIZES, factor_accuracies

SIZES = (2, 3)  # few classes: scikit-learn's boosting fits one tree per class and stage


def reference_accuracies(codes_train, factors_train, codes_test, factors_test, seed):
    """Per factor test accuracy of the study's two predictors, as disentanglement_lib builds them."""
    out = {"logreg": [], "gbt": []}
    for k in range(factors_train.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logreg = LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5)).fit(codes_train, factors_train[:, k])
        gbt = GradientBoostingClassifier(random_state=seed).fit(codes_train, factors_train[:, k])
        out["logreg"].append(np.mean(logreg.predict(codes_test) == factors_test[:, k]))
        out["gbt"].append(np.mean(gbt.predict(codes_test) == factors_test[:, k]))
    return {name: np.array(values) for name, values in out.items()}


def expected_scores(splits, seed):
    expected, means = {}, {}
    for split in splits:
        size = len(split[0])
        for predictor, accuracy in reference_accuracies(*split, seed).items():
            means[predictor, size] = accuracy.mean()
            expected[f"downstream_{predictor}_accuracy_{size}"] = accuracy.mean()
            expected[f"downstream_{predictor}_min_accuracy_{size}"] = accuracy.min()
    for predictor in ("logreg", "gbt"):
        if (predictor, 10000) in means:
            expected[f"downstream_{predictor}_sample_efficiency"] = means[predictor, 100] / means[predictor, 10000]
    return expected


def test_every_score_equals_scikit_learns_models_on_the_same_splits(make_encoder):
    encoder = make_encoder(sizes=SIZES, noise_dims=2, rotate=True, seed=3)
    noisy = lambda factors: encoder(factors) + np.random.default_rng(len(factors)).normal(0, 0.3, (len(factors), 4))  # noqa: E731
    splits = []
    for i, size in enumerate(TRAIN_SIZES):
        train = sample_factors(SIZES, size, np.random.default_rng(10 + i))
        test = sample_factors(SIZES, 500, np.random.default_rng(20 + i))
        splits.append((noisy(train), train, noisy(test), test))
    scores = downstream_task(splits, np.random.default_rng(5))
    expected = expected_scores(splits, seed_from(np.random.default_rng(5)))
    assert set(scores) == set(SCORES) == set(expected)
    for name in SCORES:
        assert scores[name] == pytest.approx(expected[name], abs=1e-12), name
    assert all(type(v) is float for v in scores.values())
    # Not a degenerate check: the codes carry the factors, blurred, and more codes teach more.
    assert 0.5 < scores["downstream_logreg_accuracy_10"] < scores["downstream_logreg_accuracy_10000"] < 1.0
    assert scores["downstream_gbt_sample_efficiency"] < 1.0


def test_the_spec_draws_fresh_train_and_test_factors_per_size_from_the_dataset_sampler():
    """Through the evaluation's calling convention: train then test factors per size, from the dataset's
    sampler and the metric's generator, then the boosted trees' seed; sizes up to num_train."""
    seen = []
    mixing = np.random.default_rng(0).normal(size=(2, 3))

    def represent(factors):
        seen.append(factors)
        return factors @ mixing + np.sin(factors.sum(axis=1, keepdims=True) * 7.0)  # a fixed function of the factors

    def sampler(n, rng):  # an incomplete grid: the second factor is never 2 when the first is 1
        factors = sample_factors(SIZES, n, rng)
        factors[(factors[:, 0] == 1) & (factors[:, 1] == 2), 1] = 0
        return factors

    inputs = MetricInputs(represent, SIZES, rng=np.random.default_rng(9), sample_factors=sampler)
    scores = SPEC_BY_NAME["downstream"].evaluate(inputs, {"num_train": 999, "num_test": 60})

    rng = np.random.default_rng(9)
    draws = [sampler(n, rng) for size in (10, 100) for n in (size, 60)]
    assert len(seen) == 1 and np.array_equal(seen[0], np.concatenate(draws))
    splits = [(represent(draws[i]), draws[i], represent(draws[i + 1]), draws[i + 1]) for i in (0, 2)]
    expected = expected_scores(splits, seed_from(rng))
    assert scores == pytest.approx(expected, abs=1e-12)
    assert set(scores) == {
        f"downstream_{p}_{s}_{n}" for p in ("logreg", "gbt") for s in ("accuracy", "min_accuracy") for n in (10, 100)
    }


def test_a_factor_with_one_value_in_the_train_split_is_predicted_as_that_value():
    codes_train = np.arange(20.0).reshape(10, 2)
    factors_train = np.column_stack([np.zeros(10, dtype=int), np.arange(10) % 2])
    factors_test = np.array([[0, 0], [1, 1], [0, 1], [2, 0]])
    codes_test = np.arange(8.0).reshape(4, 2)
    for predictor in ("logreg", "gbt"):
        accuracy = factor_accuracies(codes_train, factors_train, codes_test, factors_test, predictor)
        assert accuracy[0] == 0.5  # two of the four test rows hold the train split's one value


def test_bad_input_is_refused_by_name(make_encoder):
    codes, factors = make_encoder(sizes=SIZES).sample(50, seed=0)
    with pytest.raises(ValueError, match=r"train sizes \[50\]: each must be one of"):
        downstream_task([(codes, factors, codes, factors)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        downstream_task([(codes[:10], factors[:10], codes, factors)], np.random.default_rng(0), backend="fast")
    inputs = MetricInputs(make_encoder(sizes=SIZES), SIZES, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_train must be an integer >= 10"):
        SPEC_BY_NAME["downstream"].evaluate(inputs, {"num_train": 5, "num_test": 10})
