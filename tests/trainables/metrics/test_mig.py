import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from trainables.metrics.mig import discrete_entropy, discrete_mutual_info, discretize, mig

NUM_BINS = 20
VARIED = np.column_stack([np.arange(10) % 2, np.arange(10) % 3])


def test_discretize_matches_histogram_and_digitize():
    rng = np.random.default_rng(0)
    codes = np.column_stack([rng.normal(size=500), rng.exponential(size=500), np.full(500, 2.5), np.arange(500) % 7.0])
    expected = np.column_stack(
        [np.digitize(codes[:, d], np.histogram(codes[:, d], NUM_BINS)[1][:-1]) for d in range(codes.shape[1])]
    )
    binned = discretize(codes, NUM_BINS)
    np.testing.assert_array_equal(binned, expected)
    assert binned.min() >= 1 and binned.max() <= NUM_BINS
    assert binned[:, 0].max() == NUM_BINS  # the maximum falls in the last bin
    assert np.unique(binned[:, 2]).size == 1  # a constant latent lands in a single bin


def test_discrete_mutual_info_equals_sklearn_elementwise():
    rng = np.random.default_rng(1)
    a = np.column_stack(
        [
            rng.integers(1, 21, size=700),
            rng.integers(0, 3, size=700) * 1000 - 5,  # sparse, negative labels
            np.full(700, 4),  # a single label
        ]
    )
    b = np.column_stack([a[:, 0] // 3, rng.integers(0, 40, size=700), rng.integers(0, 2, size=700), np.zeros(700, int)])
    expected = np.array([[mutual_info_score(b[:, j], a[:, i]) for j in range(4)] for i in range(3)])
    result = discrete_mutual_info(a, b)
    assert result.shape == (3, 4)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-15)
    assert (result[2] == 0).all() and (result[:, 3] == 0).all()


def test_discrete_mutual_info_of_binned_codes_equals_sklearn(disentangled):
    codes, factors = disentangled.sample(2000, seed=2)
    binned = discretize(codes, NUM_BINS)
    expected = np.array(
        [[mutual_info_score(factors[:, k], binned[:, d]) for k in range(5)] for d in range(binned.shape[1])]
    )
    np.testing.assert_allclose(discrete_mutual_info(binned, factors), expected, rtol=1e-12, atol=1e-15)


def test_discrete_entropy_is_self_information():
    rng = np.random.default_rng(3)
    factors = np.column_stack([rng.integers(0, 40, size=900), np.full(900, 2), rng.integers(0, 3, size=900) * 7])
    expected = [mutual_info_score(factors[:, k], factors[:, k]) for k in range(3)]
    np.testing.assert_allclose(discrete_entropy(factors), expected, rtol=1e-12, atol=1e-15)


def test_disentangled_codes_score_one_minus_estimator_bias(disentangled):
    num_rows = 10000
    codes, factors = disentangled.sample(num_rows, seed=4)
    info = discrete_mutual_info(discretize(codes, NUM_BINS), factors)
    entropy = discrete_entropy(factors)
    # Every factor has at most 20 values, so each lands in its own bin: its latent carries all of it.
    np.testing.assert_allclose(np.diag(info), entropy, rtol=1e-12)
    # The runner-up is a noise latent, independent of the factor, but the plug-in estimate of its
    # information is biased up by about (bins - 1)(values - 1) / 2n nats; the gap falls short of 1
    # by that over H (a little more, as the largest of several estimates).
    sizes = np.asarray(disentangled.sizes)
    bias = (NUM_BINS - 1) * (sizes - 1) / (2 * num_rows)
    expected_shortfall = np.mean(bias / entropy)
    shortfall = 1.0 - mig(codes, factors)["mig"]
    assert 0.9 * expected_shortfall < shortfall < 1.5 * expected_shortfall


def test_rotation_lowers_mig(disentangled, rotated):
    straight = mig(*disentangled.sample(5000, seed=5))["mig"]
    mixed = mig(*rotated.sample(5000, seed=5))["mig"]
    assert straight > 0.98
    assert mixed < 0.5 * straight


def test_noise_scores_near_zero(noise):
    assert mig(*noise.sample(5000, seed=6))["mig"] < 0.02


def test_result_is_a_plain_float_and_deterministic(rotated):
    codes, factors = rotated.sample(1000, seed=7)
    first, second = mig(codes, factors), mig(codes, factors)
    assert first == second
    assert type(first["mig"]) is float


@pytest.mark.parametrize(
    ("codes", "factors", "message"),
    [
        (np.zeros(10), np.zeros((10, 2), int), "MIG: codes must be a 2-D"),
        (np.zeros((10, 0)), np.zeros((10, 2), int), "MIG: codes has no latent dimensions"),
        (np.zeros((10, 3)), np.zeros((9, 2), int), "MIG: factors has 9 rows but the codes have 10"),
        (np.zeros((10, 1)), VARIED, "MIG: needs at least two latents"),
        (np.full((10, 3), np.inf), VARIED, "MIG: codes contains 30 non-finite"),
        (np.zeros((10, 3)), np.zeros((10, 2)), "MIG: factors must hold integer class indices"),
        (
            np.random.default_rng(0).normal(size=(10, 3)),
            np.column_stack([np.zeros(10, int), np.arange(10) % 2]),
            "MIG: factor 0 takes a single value",
        ),
    ],
)
def test_bad_input_is_refused(codes, factors, message):
    with pytest.raises(ValueError, match=message):
        mig(codes, factors)
