import numpy as np
import pytest
import scipy.linalg

from trainables.metrics.unsupervised import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    unsupervised_scores,
)

GAUSSIAN_KEYS = ("gaussian_total_correlation", "gaussian_wasserstein_correlation", "gaussian_wasserstein_correlation_norm")


def codes_with_covariance(covariance: np.ndarray, num_rows: int = 2000, seed: int = 0) -> np.ndarray:
    """Gaussian codes whose sample covariance (ddof=1) is exactly `covariance`."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(num_rows, len(covariance)))
    raw -= raw.mean(axis=0)
    whitened = raw @ np.linalg.inv(np.linalg.cholesky(np.cov(raw, rowvar=False))).T
    return whitened @ np.linalg.cholesky(covariance).T


def test_independent_codes_have_no_total_correlation():
    codes = np.random.default_rng(1).normal(size=(10000, 5)) * [1, 2, 3, 0.5, 0.1]
    scores = unsupervised_scores(codes)
    assert 0 <= scores["gaussian_total_correlation"] < 0.005
    assert scores["gaussian_wasserstein_correlation_norm"] < 0.005
    assert scores["mutual_info_score"] < 0.02


@pytest.mark.parametrize("scale", [(1.0, 1.0), (3.0, 0.2)])
def test_correlated_codes_match_the_closed_form(scale):
    rho = 0.6
    covariance = np.array([[1.0, rho], [rho, 1.0]]) * np.outer(scale, scale)
    scores = unsupervised_scores(codes_with_covariance(covariance))
    # Total correlation of a bivariate Gaussian: -log(1 - rho^2) / 2, whatever the scales.
    assert scores["gaussian_total_correlation"] == pytest.approx(-0.5 * np.log(1 - rho**2), rel=1e-9)
    assert scores["mutual_info_score"] > 0.1


def test_wasserstein_of_unit_variances_matches_the_closed_form():
    rho = 0.6
    scores = unsupervised_scores(codes_with_covariance(np.array([[1.0, rho], [rho, 1.0]])))
    # sqrtm of [[1, r], [r, 1]] has eigenvalues sqrt(1 + r) and sqrt(1 - r).
    expected = 4 - 2 * (np.sqrt(1 + rho) + np.sqrt(1 - rho))
    assert scores["gaussian_wasserstein_correlation"] == pytest.approx(expected, rel=1e-9)
    assert scores["gaussian_wasserstein_correlation_norm"] == pytest.approx(expected / 2, rel=1e-9)


def test_diagonal_covariance_has_zero_correlations():
    scores = unsupervised_scores(codes_with_covariance(np.diag([4.0, 1.0, 0.25])))
    assert scores["gaussian_total_correlation"] == pytest.approx(0.0, abs=1e-10)
    assert scores["gaussian_wasserstein_correlation"] == pytest.approx(0.0, abs=1e-10)


def test_wasserstein_trace_equals_the_symmetric_form():
    a = np.random.default_rng(2).normal(size=(4, 4))
    covariance = a @ a.T + 0.1 * np.eye(4)
    scaled = np.sqrt(np.diag(covariance))
    symmetric = scaled[:, None] * covariance * scaled[None, :]
    expected = 2 * np.trace(covariance) - 2 * np.trace(scipy.linalg.sqrtm(symmetric))
    assert gaussian_wasserstein_correlation(covariance) == pytest.approx(float(np.real(expected)), rel=1e-9)


def test_constant_latent_adds_nothing():
    codes = codes_with_covariance(np.array([[1.0, 0.5], [0.5, 2.0]]))
    with_constant = np.column_stack([codes, np.full(len(codes), 7.0)])
    plain, padded = unsupervised_scores(codes), unsupervised_scores(with_constant)
    for key in GAUSSIAN_KEYS:
        assert padded[key] == pytest.approx(plain[key], rel=1e-12)
    # The constant latent's zero information counts among the pairs, as in the reference.
    assert padded["mutual_info_score"] == pytest.approx(plain["mutual_info_score"] * 2 / 6)


def test_all_constant_codes_score_zero():
    assert unsupervised_scores(np.ones((50, 3))) == {
        "gaussian_total_correlation": 0.0,
        "gaussian_wasserstein_correlation": 0.0,
        "gaussian_wasserstein_correlation_norm": 0.0,
        "mutual_info_score": 0.0,
    }


def test_duplicate_latents_have_infinite_total_correlation():
    codes = np.random.default_rng(3).normal(size=(100, 1))
    assert gaussian_total_correlation(np.cov(np.column_stack([codes, codes]), rowvar=False)) == np.inf


def test_results_are_plain_floats_and_deterministic():
    codes = np.random.default_rng(4).normal(size=(500, 3))
    first = unsupervised_scores(codes)
    assert first == unsupervised_scores(codes)
    assert all(type(v) is float for v in first.values())


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.zeros((10, 1)), "Unsupervised scores: correlations between latents need at least two"),
        (np.zeros(10), "Unsupervised scores: codes must be a 2-D"),
        (np.zeros((1, 3)), "Unsupervised scores: codes has 1 rows, needs at least 2"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "Unsupervised scores: codes contains 1 non-finite"),
    ],
)
def test_bad_input_is_refused(codes, message):
    with pytest.raises(ValueError, match=message):
        unsupervised_scores(codes)
