import numpy as np
import pytest

from trainables.metrics.beta_vae import _points, beta_vae_score

SMALL = {"num_train": 800, "num_eval": 500}


def test_disentangled_codes_score_near_one(disentangled):
    scores = beta_vae_score(disentangled, disentangled.sizes, np.random.default_rng(0), **SMALL)
    assert scores["beta_vae_train"] > 0.95
    assert scores["beta_vae_eval"] > 0.95


def test_noise_codes_score_chance(noise):
    scores = beta_vae_score(noise, noise.sizes, np.random.default_rng(0), **SMALL)
    chance = 1 / len(noise.sizes)
    assert abs(scores["beta_vae_eval"] - chance) < 0.07


def test_same_seed_gives_same_scores(make_encoder):
    first = beta_vae_score(make_encoder(rotate=True), make_encoder().sizes, np.random.default_rng(3), **SMALL)
    second = beta_vae_score(make_encoder(rotate=True), make_encoder().sizes, np.random.default_rng(3), **SMALL)
    assert first == second
    assert all(type(v) is float for v in first.values())


def test_represent_called_once_per_split(disentangled):
    calls = []

    def counting(factors):
        calls.append(factors.shape)
        return disentangled(factors)

    beta_vae_score(counting, disentangled.sizes, np.random.default_rng(0), batch_size=16, **SMALL)
    assert calls == [(2 * 800 * 16, 5), (2 * 500 * 16, 5)]


def test_pairs_share_exactly_the_labelled_factor():
    seen = []

    def recording(factors):
        seen.append(factors.copy())
        return factors.astype(float)

    sizes = (50, 50, 50)
    features, labels = _points(recording, sizes, np.random.default_rng(0), 8, 300)
    first, second = np.split(seen[0], 2)
    shared = (first == second).reshape(300, 8, 3).all(axis=1)
    # The labelled factor is shared by all 8 pairs; another one by chance with odds (1/50)^8.
    np.testing.assert_array_equal(shared, np.eye(3, dtype=bool)[labels])
    expected = np.abs(first - second).reshape(300, 8, 3).mean(axis=1)
    np.testing.assert_allclose(features, expected)


def test_single_valued_factor_is_refused(disentangled):
    with pytest.raises(ValueError, match="BetaVAE score: factor 1 has a single value"):
        beta_vae_score(disentangled, (3, 1, 4), np.random.default_rng(0), **SMALL)


def test_single_factor_is_refused(disentangled):
    with pytest.raises(ValueError, match="BetaVAE score: needs at least two factors"):
        beta_vae_score(disentangled, (4,), np.random.default_rng(0), **SMALL)


def test_non_finite_codes_are_refused(disentangled):
    def broken(factors):
        codes = disentangled(factors)
        codes[0, 0] = np.nan
        return codes

    with pytest.raises(ValueError, match="BetaVAE score: represent\\(\\) output contains 1 non-finite"):
        beta_vae_score(broken, disentangled.sizes, np.random.default_rng(0), **SMALL)


def test_wrong_number_of_codes_is_refused(disentangled):
    with pytest.raises(ValueError, match="BetaVAE score: represent\\(\\) returned 1 codes"):
        beta_vae_score(lambda f: disentangled(f)[:1], disentangled.sizes, np.random.default_rng(0), **SMALL)
