"""The compiled boosting classifier against scikit-learn's GradientBoostingClassifier with the same random_state.

Every tree is compared node by node: the same children, features, thresholds,
sample counts and leaf values to the bit, impurities to the last bits (ties
between equal feature values of different samples are summed in another order
where that cannot change a decision).
"""

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.utils._sorting import _py_simultaneous_sort

from trainables.metrics.boosting import ExactBoosting, _introsort, _pairwise_sum
from trainables.metrics.dci import dci

STAGES = 10  # scikit-learn's 100 stages grow the same trees; ten keep the tests fast


def codes(num_classes: int, n: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random codes: two latents informative about the class, the others noise; a train and a test split."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    x = rng.standard_normal((n, features))
    x[:, 0] += 0.5 * y
    x[:, 1] += y % 2
    return x, y, rng.standard_normal((n // 2, features))


def fit_both(x, y, seed=0, stages=STAGES):
    ours = ExactBoosting(n_estimators=stages, random_state=seed).fit(x, y)
    theirs = GradientBoostingClassifier(n_estimators=stages, random_state=seed).fit(x, y)
    return ours, theirs


def assert_same_trees(ours: ExactBoosting, theirs: GradientBoostingClassifier) -> None:
    per_stage = ours.init_raw_.size
    assert ours.node_count.size == theirs.estimators_.size
    for t in range(ours.node_count.size):
        tree = theirs.estimators_[t // per_stage, t % per_stage].tree_
        count = tree.node_count
        where = f"tree {t} (stage {t // per_stage}, class {t % per_stage})"
        assert ours.node_count[t] == count, where
        for name in ("children_left", "children_right", "feature", "threshold", "n_node_samples"):
            np.testing.assert_array_equal(getattr(ours, name)[t, :count], getattr(tree, name), err_msg=where)
        leaves = tree.children_left == -1
        np.testing.assert_array_equal(ours.value[t, :count][leaves], tree.value[leaves, 0, 0], err_msg=where)
        np.testing.assert_allclose(ours.impurity[t, :count], tree.impurity, rtol=1e-9, atol=1e-12, err_msg=where)


def assert_same_model(ours, theirs, x, x_test) -> None:
    assert_same_trees(ours, theirs)
    assert np.array_equal(ours.predict(x), theirs.predict(x))
    assert np.array_equal(ours.predict(x_test), theirs.predict(x_test))
    np.testing.assert_allclose(ours.feature_importances_, theirs.feature_importances_, rtol=0, atol=1e-12)
    raw = theirs.decision_function(x_test).reshape(len(x_test), -1)
    np.testing.assert_array_equal(ours.decision_function(x_test), raw)


@pytest.mark.parametrize("num_classes, n, seed", [(2, 1000, 4), (3, 1000, 1), (6, 1000, 2), (40, 2000, 3)])
def test_trees_predictions_and_importances_match_sklearn(num_classes, n, seed):
    x, y, x_test = codes(num_classes, n, 6, seed)
    assert_same_model(*fit_both(x, y), x, x_test)


def test_ties_between_samples_take_sklearn_order_where_it_decides():
    """Coarse values tie many samples; where the presort's order could tip a near-tie, the tree is regrown."""
    x, y, x_test = codes(6, 1500, 5, seed=11)
    x[:, 0] = np.round(x[:, 0], 1)
    x[:, 2] = np.round(x[:, 2], 2)
    ours, theirs = fit_both(x, y, seed=3, stages=20)
    assert ours.regrown_ > 0  # the introsort path ran
    assert_same_model(ours, theirs, x, x_test)


def test_twins_constant_feature_repeated_and_near_equal_values_match_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 300)
    x = np.column_stack(
        [
            np.round(rng.standard_normal(300) + y, 1),  # repeated values
            np.full(300, 0.25),  # constant
            rng.standard_normal(300),
            np.where(rng.random(300) < 0.5, 1.0, 1.0 + 5e-8),  # values closer than FEATURE_THRESHOLD
        ]
    )
    x[200:260], y[200:260] = x[140:200], y[140:200]  # twins: the same codes and class twice
    ours, theirs = fit_both(x, y, seed=7)
    assert_same_model(ours, theirs, x, x[::3])
    assert ours.feature_importances_[1] == 0.0


def test_duplicated_features_tie_as_in_sklearn():
    """Identical columns give bit-identical splits: the first feature scikit-learn's draws visit wins."""
    x, y, _ = codes(2, 300, 2, seed=6)
    x = np.repeat(x[:, :1], 5, axis=1)
    for seed in range(4):
        ours, theirs = fit_both(x, y, seed=seed, stages=3)
        assert_same_trees(ours, theirs)
        np.testing.assert_array_equal(ours.feature_importances_, theirs.feature_importances_)


def test_more_classes_than_samples_in_a_node():
    rng = np.random.default_rng(8)
    y = np.arange(60) % 40  # 40 classes, one or two samples each
    x = rng.standard_normal((60, 3)) + y[:, None] * 0.01
    ours, theirs = fit_both(x, y, stages=3)
    assert_same_model(ours, theirs, x, x)


def test_the_thread_count_does_not_change_the_trees():
    x, y, _ = codes(6, 600, 4, seed=12)
    one = ExactBoosting(n_estimators=5, random_state=2, n_threads=1).fit(x, y)
    two = ExactBoosting(n_estimators=5, random_state=2, n_threads=2).fit(x, y)
    for name in ("children_left", "feature", "threshold", "impurity", "value"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))


def test_introsort_is_sklearn_simultaneous_sort():
    rng = np.random.default_rng(13)
    for n in (1, 2, 15, 16, 17, 100, 5000):
        for values in (rng.integers(0, 4, n), rng.standard_normal(n), np.zeros(n)):
            ours_v, ours_i = values.astype(np.float32), np.arange(n, dtype=np.int32)
            theirs_v, theirs_i = ours_v.copy(), np.arange(n, dtype=np.intp)
            _introsort(ours_v, ours_i, 0, n)
            _py_simultaneous_sort(theirs_v, theirs_i, n, use_three_way_partition=True)
            np.testing.assert_array_equal(ours_i, theirs_i)


def test_pairwise_sum_is_numpys():
    rng = np.random.default_rng(14)
    for n in (*range(1, 140), 1000, 8191, 8192, 10001):
        a = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)
        assert _pairwise_sum(a, 0, n) == np.sum(a)


def test_dci_backends_agree():
    rng = np.random.default_rng(9)
    factors = rng.integers(0, [2, 3], size=(600, 2))
    latent = np.column_stack([factors + 0.3 * rng.standard_normal((600, 2)), rng.standard_normal((600, 2))])
    train, test = slice(0, 400), slice(400, 600)
    args = (latent[train], factors[train], latent[test], factors[test])
    exact = dci(*args, np.random.default_rng(1), n_jobs=1, backend="exact")
    reference = dci(*args, np.random.default_rng(1), n_jobs=1, backend="sklearn")
    assert exact.keys() == reference.keys()
    for key in exact:
        assert exact[key] == pytest.approx(reference[key], abs=1e-12)


def test_refuses_a_single_class_and_bad_features():
    with pytest.raises(ValueError, match="single class"):
        ExactBoosting().fit(np.zeros((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        ExactBoosting().fit(np.array([[np.nan], [1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="fitted on 2 features"):
        ExactBoosting(n_estimators=1).fit(np.eye(4)[:, :2], np.array([0, 1, 0, 1])).predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="unknown backend"):
        dci(
            np.zeros((4, 2)),
            np.zeros((4, 2), int),
            np.zeros((2, 2)),
            np.zeros((2, 2), int),
            np.random.default_rng(0),
            backend="xgboost",
        )
