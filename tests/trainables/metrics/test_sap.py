import numpy as np
import pytest
from sklearn.svm import LinearSVC

from trainables.metrics.sap import sap, sap_continuous

BINARY = (2, 2, 2)  # a linear SVM on one latent can separate two classes, not the middle of many


def splits(encoder, num_train=1000, num_test=500):
    codes_train, factors_train = encoder.sample(num_train, seed=1)
    codes_test, factors_test = encoder.sample(num_test, seed=2)
    return codes_train, factors_train, codes_test, factors_test


def test_each_factor_in_one_latent_scores_high(make_encoder):
    # The factor's own latent classifies perfectly, every other latent at chance (1/2): a gap of 1/2.
    score = sap(*splits(make_encoder(sizes=BINARY, noise_dims=3)), n_jobs=1)["sap"]
    assert 0.4 < score <= 0.5


def test_noise_scores_near_zero(make_encoder):
    assert sap(*splits(make_encoder(sizes=BINARY, noise_dims=5, factor_latents=False)), n_jobs=1)["sap"] < 0.05


def test_rotation_lowers_the_score(make_encoder):
    straight = sap(*splits(make_encoder(sizes=BINARY, noise_dims=3)), n_jobs=1)["sap"]
    mixed = sap(*splits(make_encoder(sizes=BINARY, noise_dims=3, rotate=True)), n_jobs=1)["sap"]
    assert mixed < 0.5 * straight


def test_matches_the_per_pair_accuracy_matrix(make_encoder):
    codes_train, factors_train, codes_test, factors_test = splits(make_encoder(sizes=(2, 3), noise_dims=2), 400, 200)
    matrix = np.zeros((4, 2))
    for d in range(4):
        for k in range(2):
            model = LinearSVC(C=0.01, class_weight="balanced").fit(codes_train[:, [d]], factors_train[:, k])
            matrix[d, k] = np.mean(model.predict(codes_test[:, [d]]) == factors_test[:, k])
    ordered = np.sort(matrix, axis=0)
    expected = np.mean(ordered[-1] - ordered[-2])
    assert sap(codes_train, factors_train, codes_test, factors_test, n_jobs=1)["sap"] == pytest.approx(expected)


def test_same_result_serial_or_parallel_and_deterministic(make_encoder):
    data = splits(make_encoder(sizes=BINARY, noise_dims=2, rotate=True), 300, 100)
    serial = sap(*data, n_jobs=1)
    assert serial == sap(*data, n_jobs=2) == sap(*data, n_jobs=1)
    assert type(serial["sap"]) is float


def test_continuous_variant_scores_squared_correlation_gaps():
    rng = np.random.default_rng(0)
    values = rng.uniform(size=(2000, 2))
    codes = np.column_stack([3 * values[:, 0] + 1, -values[:, 1], rng.normal(size=2000), np.zeros(2000)])
    assert sap_continuous(codes, values)["sap_continuous"] > 0.99
    assert sap_continuous(rng.normal(size=(2000, 4)), values)["sap_continuous"] < 0.01


def test_continuous_variant_refuses_a_constant_factor():
    values = np.column_stack([np.arange(10.0), np.ones(10)])
    with pytest.raises(ValueError, match="SAP: factor 1 takes a single value"):
        sap_continuous(np.random.default_rng(0).normal(size=(10, 3)), values)


@pytest.mark.parametrize(
    ("codes_train", "factors_train", "message"),
    [
        (np.zeros((20, 1)), np.column_stack([np.arange(20) % 2]), "SAP: needs at least two latents"),
        (np.zeros((20, 3, 1)), np.column_stack([np.arange(20) % 2]), "SAP: codes_train must be a 2-D"),
        (np.zeros((20, 3)), np.zeros((20, 1), int), "SAP: factor 0 takes a single value in factors_train"),
        (np.full((20, 3), np.nan), np.column_stack([np.arange(20) % 2]), "SAP: codes_train contains 60 non-finite"),
    ],
)
def test_bad_input_is_refused(codes_train, factors_train, message):
    with pytest.raises(ValueError, match=message):
        sap(codes_train, factors_train, np.zeros((5, codes_train.shape[1])), np.zeros((5, 1), int))
