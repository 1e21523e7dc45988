"""The exact boosting classifier against scikit-learn's GradientBoostingClassifier with the same random_state."""

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from trainables.metrics.boosting import RAND_R_MAX, ExactBoosting, _FeatureDraws
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


def same_trees(ours: ExactBoosting, theirs: GradientBoostingClassifier) -> bool:
    """Every tree has the same splits (feature and threshold) and leaf values as scikit-learn's."""

    def same(tree, stage, k, node, slot):
        if tree.children_left[node] == -1:
            leaf = slot >= len(stage.split[k]) or not stage.split[k, slot]
            return leaf and stage.value[k, slot] == pytest.approx(tree.value[node, 0, 0], rel=1e-9, abs=1e-12)
        return (
            slot < len(stage.split[k])
            and stage.split[k, slot]
            and stage.feature[k, slot] == tree.feature[node]
            and stage.threshold[k, slot] == tree.threshold[node]
            and same(tree, stage, k, tree.children_left[node], 2 * slot + 1)
            and same(tree, stage, k, tree.children_right[node], 2 * slot + 2)
        )

    return all(
        same(theirs.estimators_[i, k].tree_, stage, k, 0, 0)
        for i, stage in enumerate(ours.stages_)
        for k in range(stage.split.shape[0])
    )


@pytest.mark.parametrize("num_classes, n, seed", [(2, 1000, 4), (3, 1000, 1), (6, 1000, 2), (40, 2000, 3)])
def test_trees_predictions_and_importances_match_sklearn(num_classes, n, seed):
    x, y, x_test = codes(num_classes, n, 6, seed)
    ours, theirs = fit_both(x, y)
    assert same_trees(ours, theirs)
    assert np.array_equal(ours.predict(x), theirs.predict(x))
    assert np.array_equal(ours.predict(x_test), theirs.predict(x_test))
    np.testing.assert_allclose(ours.feature_importances_, theirs.feature_importances_, atol=1e-6)
    raw = theirs.decision_function(x_test).reshape(len(x_test), -1)
    np.testing.assert_allclose(ours.decision_function(x_test), raw, atol=1e-9)


def test_constant_feature_repeated_values_and_tiny_nodes_match_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    x = np.column_stack(
        [
            np.round(rng.standard_normal(200) + y, 1),  # repeated values
            np.full(200, 0.25),  # constant
            rng.standard_normal(200),
            np.where(rng.random(200) < 0.5, 1.0, 1.0 + 5e-8),  # values closer than FEATURE_THRESHOLD
        ]
    )
    ours, theirs = fit_both(x, y, seed=7)
    assert same_trees(ours, theirs)
    assert ours.feature_importances_[1] == 0.0
    np.testing.assert_allclose(ours.feature_importances_, theirs.feature_importances_, atol=1e-6)


def test_duplicated_features_tie_as_in_sklearn():
    """Identical columns give bit-identical splits: the first feature scikit-learn's draws visit wins."""
    x, y, _ = codes(2, 300, 2, seed=6)
    x = np.repeat(x[:, :1], 5, axis=1)
    for seed in range(4):
        ours, theirs = fit_both(x, y, seed=seed, stages=3)
        assert same_trees(ours, theirs)
        np.testing.assert_allclose(ours.feature_importances_, theirs.feature_importances_, atol=1e-6)


def test_more_classes_than_samples_in_a_node():
    rng = np.random.default_rng(8)
    y = np.arange(60) % 40  # 40 classes, one or two samples each
    x = rng.standard_normal((60, 3)) + y[:, None] * 0.01
    ours, theirs = fit_both(x, y, stages=3)
    assert same_trees(ours, theirs)
    assert np.array_equal(ours.predict(x), theirs.predict(x))
    np.testing.assert_allclose(ours.feature_importances_, theirs.feature_importances_, atol=1e-6)


def test_feature_draws_replay_sklearn_root_order():
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(0)
    x = np.repeat(rng.standard_normal((50, 1)), 6, axis=1)
    target = rng.standard_normal(50)
    for seed in range(8):
        tree = DecisionTreeRegressor(max_depth=1, random_state=np.random.RandomState(seed)).fit(x, target)
        order, _, _ = _FeatureDraws(np.random.RandomState(seed).randint(0, RAND_R_MAX), 6).visit(0, np.zeros(6, bool))
        assert tree.tree_.feature[0] == order[0]


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
        assert exact[key] == pytest.approx(reference[key], abs=1e-6)


def test_refuses_a_single_class_and_bad_features():
    with pytest.raises(ValueError, match="single class"):
        ExactBoosting().fit(np.zeros((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        ExactBoosting().fit(np.array([[np.nan], [1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown backend"):
        dci(
            np.zeros((4, 2)),
            np.zeros((4, 2), int),
            np.zeros((2, 2)),
            np.zeros((2, 2), int),
            np.random.default_rng(0),
            backend="xgboost",
        )
