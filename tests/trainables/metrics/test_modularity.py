import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from trainables.factors import sample_factors
from trainables.metrics.modularity import explicitness_per_factor, modularity, modularity_explicitness

SIZES = (3, 6, 10)


def one_factor_per_latent(factors: np.ndarray) -> np.ndarray:
    """Six latents, each a different (nonlinear) function of a single factor."""
    f = factors.astype(float)
    return np.column_stack([f[:, 0], f[:, 0] ** 2, f[:, 1], np.sin(f[:, 1]), f[:, 2], np.exp(f[:, 2] / 3)])


def sampled(num_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    factors = sample_factors(SIZES, num_rows, np.random.default_rng(seed))
    return one_factor_per_latent(factors), factors


def test_latents_of_single_factors_are_modular():
    codes_train, factors_train = sampled(3000, seed=1)
    codes_test, factors_test = sampled(1000, seed=2)
    scores = modularity_explicitness(codes_train, factors_train, codes_test, factors_test)
    assert scores["modularity"] > 0.99
    assert scores["explicitness_test"] > 0.9


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # default max_iter, as the reference
def test_mixing_lowers_modularity():
    codes_train, factors_train = sampled(3000, seed=1)
    codes_test, factors_test = sampled(1000, seed=2)
    mixing = np.random.default_rng(3).normal(size=(6, 6))
    straight = modularity_explicitness(codes_train, factors_train, codes_test, factors_test)
    mixed = modularity_explicitness(codes_train @ mixing, factors_train, codes_test @ mixing, factors_test)
    assert mixed["modularity"] < straight["modularity"] - 0.2


def test_noise_is_not_explicit():
    rng = np.random.default_rng(4)
    factors_train, factors_test = sample_factors(SIZES, 2000, rng), sample_factors(SIZES, 1000, rng)
    codes_train, codes_test = rng.normal(size=(2000, 5)), rng.normal(size=(1000, 5))
    scores = modularity_explicitness(codes_train, factors_train, codes_test, factors_test)
    assert abs(scores["explicitness_test"] - 0.5) < 0.05


@pytest.mark.parametrize(
    ("mutual_info", "expected"),
    [
        (np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), 1.0),  # each latent informs one factor
        (np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), 0.0),  # equally about all; no information
        (np.array([[2.0, 1.0, 0.0]]), 1.0 - 1.0 / (4.0 * 2)),  # delta = (5 - 4) / (4 * (K - 1))
    ],
)
def test_modularity_of_known_matrices(mutual_info, expected):
    assert modularity(mutual_info) == pytest.approx(expected)


def test_explicitness_matches_the_reference_computation_when_splits_share_classes():
    rng = np.random.default_rng(5)
    train_x, test_x = rng.normal(size=(600, 4)), rng.normal(size=(300, 4))
    factor_train = np.clip((train_x[:, 0] * 2 + 2).astype(int), 0, 3)
    factor_test = np.clip((test_x[:, 0] * 2 + 2).astype(int), 0, 3)
    model = LogisticRegression().fit(train_x, factor_train)
    mlb = MultiLabelBinarizer()
    expected = (
        roc_auc_score(mlb.fit_transform(np.expand_dims(factor_train, 1)), model.predict_proba(train_x)),
        roc_auc_score(mlb.fit_transform(np.expand_dims(factor_test, 1)), model.predict_proba(test_x)),
    )
    result = explicitness_per_factor(train_x, factor_train, test_x, factor_test)
    assert result == pytest.approx(expected, rel=1e-12)


def test_a_class_missing_from_the_test_split_is_left_out():
    rng = np.random.default_rng(6)
    train_x, test_x = rng.normal(size=(600, 3)), rng.normal(size=(300, 3))
    factor_train = (train_x[:, 0] > 0).astype(int) + (train_x[:, 1] > 1).astype(int) * 2  # classes 0..3
    test_x = test_x[test_x[:, 1] <= 1]  # no class 2 or 3 in the test split
    factor_test = (test_x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(train_x, factor_train)
    probabilities = model.predict_proba(test_x)
    expected = np.mean([roc_auc_score(factor_test == c, probabilities[:, c]) for c in (0, 1)])
    _, test_score = explicitness_per_factor(train_x, factor_train, test_x, factor_test)
    assert test_score == pytest.approx(expected)


def test_constant_latent_is_tolerated_and_deterministic():
    codes_train, factors_train = sampled(1000, seed=7)
    codes_test, factors_test = sampled(500, seed=8)
    codes_train[:, 1] = 4.0
    first = modularity_explicitness(codes_train, factors_train, codes_test, factors_test)
    assert first == modularity_explicitness(codes_train, factors_train, codes_test, factors_test)
    assert all(type(v) is float and np.isfinite(v) for v in first.values())


def test_single_factor_is_refused():
    codes, factors = sampled(100, seed=9)
    with pytest.raises(ValueError, match="Modularity/explicitness: modularity compares factors, needs at least"):
        modularity_explicitness(codes, factors[:, :1], codes, factors[:, :1])


def test_factor_with_a_single_value_in_the_test_split_is_refused():
    codes, factors = sampled(100, seed=10)
    constant = factors.copy()
    constant[:, 2] = 0
    with pytest.raises(ValueError, match="Modularity/explicitness: factor 2 takes a single value in factors_test"):
        modularity_explicitness(codes, factors, codes, constant)
