import numpy as np
import pytest
import scipy.stats

from trainables.metrics.udr import _spearman_matrix, udr_pair_score, udr_scores

ACTIVE = np.ones(4)


def independent_codes(num_rows: int = 5000, dims: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(num_rows, dims))


def test_identical_codes_score_near_one():
    codes = independent_codes()
    # Off-diagonal |correlations| of independent latents are about 1/sqrt(n), not 0, hence not exactly 1.
    assert udr_pair_score(codes, codes, ACTIVE, ACTIVE) > 0.95


def test_permuted_and_sign_flipped_codes_score_as_identical():
    codes = independent_codes()
    flipped = -codes[:, [2, 0, 3, 1]] * [1, -1, 1, 1] * 5 + 3
    same = udr_pair_score(codes, codes, ACTIVE, ACTIVE)
    assert udr_pair_score(codes, flipped, ACTIVE, ACTIVE) == pytest.approx(same, rel=1e-12)


def test_monotone_transforms_do_not_change_the_spearman_score():
    codes = independent_codes()
    assert udr_pair_score(codes, np.exp(codes), ACTIVE, ACTIVE) == pytest.approx(
        udr_pair_score(codes, codes, ACTIVE, ACTIVE), rel=1e-12
    )


def test_unrelated_codes_score_low():
    assert udr_pair_score(independent_codes(seed=1), independent_codes(seed=2), ACTIVE, ACTIVE) < 0.2


def test_mixed_codes_score_between():
    codes = independent_codes()
    mixed = codes @ scipy.stats.ortho_group.rvs(4, random_state=3)
    score = udr_pair_score(codes, mixed, ACTIVE, ACTIVE)
    assert 0.2 < score < 0.8


def test_lasso_of_identical_codes_is_shrunk_by_alpha():
    codes = independent_codes()
    # Lasso(alpha=0.1) on standardised independent latents: coefficient 1 - 0.1 on the diagonal, 0
    # elsewhere, so every max^2 / sum is 0.9.
    assert udr_pair_score(codes, codes, ACTIVE, ACTIVE, method="lasso") == pytest.approx(0.9, abs=0.005)


def test_inactive_latents_are_left_out_of_the_means():
    codes = independent_codes(dims=5)
    kl = np.array([1.0, 1.0, 1.0, 1.0, 0.005])
    other = codes.copy()
    other[:, 4] = np.random.default_rng(9).normal(size=len(codes))  # an unrelated, but inactive, latent
    for method in ("spearman", "lasso"):
        assert udr_pair_score(codes, other, kl, kl, method=method) == pytest.approx(
            udr_pair_score(codes[:, :4], codes[:, :4], ACTIVE, ACTIVE, method=method), rel=1e-9
        )


def test_no_active_latent_scores_zero():
    codes = independent_codes()
    assert udr_pair_score(codes, codes, np.zeros(4), ACTIVE) == 0.0
    assert udr_pair_score(codes, codes, ACTIVE, np.full(4, 0.01)) == 0.0  # KL at the threshold is inactive


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_spearman_matrix_equals_scipy_pairwise():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(300, 3))
    b = np.column_stack([a[:, 0] ** 3, rng.integers(0, 5, size=300), np.ones(300)])  # ties and a constant
    expected = np.array([[abs(scipy.stats.spearmanr(a[:, i], b[:, j])[0]) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(_spearman_matrix(a, b), expected, rtol=1e-12, equal_nan=True)


def test_model_ranking_is_the_median_over_the_others():
    base = independent_codes(num_rows=2000)
    rotation = scipy.stats.ortho_group.rvs(4, random_state=5)
    models = [base, base[:, ::-1], base @ rotation, independent_codes(2000, seed=6)]
    kls = [ACTIVE] * 4
    scores = udr_scores(models, kls)
    pairs = [[udr_pair_score(models[j], models[i], kls[j], kls[i]) for j in range(4) if j != i] for i in range(4)]
    np.testing.assert_allclose(scores, [np.median(p) for p in pairs])
    assert scores[0] > scores[2] > scores[3]


@pytest.mark.parametrize(
    ("codes_b", "kl_b", "method", "message"),
    [
        (np.zeros((10, 4)), np.ones(3), "spearman", "UDR: KL of model b must have one entry per latent"),
        (np.zeros((9, 4)), np.ones(4), "spearman", "UDR: the two models encode different numbers of observations"),
        (np.zeros(10), np.ones(4), "spearman", "UDR: codes of model b must be a 2-D"),
        (np.full((10, 4), np.inf), np.ones(4), "spearman", "UDR: codes of model b contain non-finite"),
        (np.zeros((10, 4)), np.ones(4), "pearson", "UDR: method must be one of"),
    ],
)
def test_bad_input_is_refused(codes_b, kl_b, method, message):
    with pytest.raises(ValueError, match=message):
        udr_pair_score(np.zeros((10, 4)), codes_b, np.ones(4), kl_b, method=method)


def test_ranking_needs_two_models():
    with pytest.raises(ValueError, match="UDR: ranking needs at least two models"):
        udr_scores([independent_codes()], [ACTIVE])
