import numpy as np
import pytest

from trainables.metrics.factor_vae import _votes, factor_vae_score

SMALL = {"num_train": 600, "num_eval": 400, "num_variance_estimate": 2000}


def test_disentangled_codes_score_one(disentangled):
    scores = factor_vae_score(disentangled, disentangled.sizes, np.random.default_rng(0), **SMALL)
    assert scores == {"factor_vae_train": 1.0, "factor_vae_eval": 1.0, "factor_vae_active_dims": 10.0}


def test_rotation_lowers_the_score(disentangled, rotated):
    straight = factor_vae_score(disentangled, disentangled.sizes, np.random.default_rng(0), **SMALL)
    mixed = factor_vae_score(rotated, rotated.sizes, np.random.default_rng(0), **SMALL)
    assert mixed["factor_vae_eval"] < straight["factor_vae_eval"] - 0.3


def test_noise_codes_score_near_chance(noise):
    scores = factor_vae_score(noise, noise.sizes, np.random.default_rng(0), **SMALL)
    chance = 1 / len(noise.sizes)
    # The majority vote overfits the train votes a little; fresh votes land at chance.
    assert abs(scores["factor_vae_eval"] - chance) < 0.08
    assert scores["factor_vae_train"] >= scores["factor_vae_eval"] - 0.05


def test_constant_latent_is_pruned(disentangled):
    def with_constant(factors):
        return np.concatenate([disentangled(factors), np.full((len(factors), 1), 3.0)], axis=1)

    scores = factor_vae_score(with_constant, disentangled.sizes, np.random.default_rng(0), **SMALL)
    assert scores["factor_vae_active_dims"] == 10.0
    assert scores["factor_vae_eval"] == 1.0


def test_low_variance_latent_is_pruned_at_the_threshold(disentangled):
    def with_small(factors):
        codes = disentangled(factors)
        return np.concatenate([codes, 0.01 * codes[:, -1:]], axis=1)  # a noise latent with std 0.01

    pruned = factor_vae_score(with_small, disentangled.sizes, np.random.default_rng(0), **SMALL)
    kept = factor_vae_score(with_small, disentangled.sizes, np.random.default_rng(0), prune_threshold=0.001, **SMALL)
    assert pruned["factor_vae_active_dims"] == 10.0
    assert kept["factor_vae_active_dims"] == 11.0


def test_no_active_latent_scores_zero(disentangled):
    scores = factor_vae_score(lambda f: np.zeros((len(f), 4)), disentangled.sizes, np.random.default_rng(0), **SMALL)
    assert scores == {"factor_vae_train": 0.0, "factor_vae_eval": 0.0, "factor_vae_active_dims": 0.0}


def test_votes_match_a_per_batch_loop(rotated):
    """The vectorised votes equal the reference's one-batch-at-a-time computation on the same draws."""
    seen = []

    def recording(factors):
        codes = rotated(factors)
        seen.append((factors.copy(), codes))
        return codes

    global_variances = np.linspace(0.5, 2.0, 10)
    active = np.ones(10, dtype=bool)
    active[3] = False
    votes = _votes(recording, rotated.sizes, np.random.default_rng(0), 16, 200, global_variances, active)

    factors, codes = seen[0]
    expected = np.zeros_like(votes)
    for batch, batch_codes in zip(factors.reshape(200, 16, 5), codes.reshape(200, 16, 10)):
        fixed = np.flatnonzero((batch == batch[0]).all(axis=0))
        assert fixed.size >= 1
        local = np.var(batch_codes, axis=0, ddof=1)
        winner = np.flatnonzero(active)[np.argmin(local[active] / global_variances[active])]
        expected[winner, fixed[0]] += 1
    np.testing.assert_array_equal(votes, expected)
    assert votes[3].sum() == 0


def test_same_seed_gives_same_scores(make_encoder):
    first = factor_vae_score(make_encoder(rotate=True), make_encoder().sizes, np.random.default_rng(5), **SMALL)
    second = factor_vae_score(make_encoder(rotate=True), make_encoder().sizes, np.random.default_rng(5), **SMALL)
    assert first == second
    assert all(type(v) is float for v in first.values())


def test_represent_called_once_per_stage(disentangled):
    calls = []

    def counting(factors):
        calls.append(len(factors))
        return disentangled(factors)

    factor_vae_score(counting, disentangled.sizes, np.random.default_rng(0), batch_size=32, **SMALL)
    assert calls == [2000, 600 * 32, 400 * 32]


def test_single_valued_factor_is_refused(disentangled):
    with pytest.raises(ValueError, match="FactorVAE score: factor 0 has a single value"):
        factor_vae_score(disentangled, (1, 4), np.random.default_rng(0), **SMALL)


def test_batch_of_one_is_refused(disentangled):
    with pytest.raises(ValueError, match="FactorVAE score: batch_size must be an integer >= 2"):
        factor_vae_score(disentangled, disentangled.sizes, np.random.default_rng(0), batch_size=1)


def test_codes_of_wrong_shape_are_refused(disentangled):
    with pytest.raises(ValueError, match="FactorVAE score: represent\\(\\) output must be a 2-D"):
        factor_vae_score(lambda f: np.zeros(len(f)), disentangled.sizes, np.random.default_rng(0), **SMALL)
