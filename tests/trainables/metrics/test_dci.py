import numpy as np
import pytest

from trainables.metrics.dci import completeness, dci, disentanglement

SIZES = (2, 3, 4)  # few classes: gradient boosting fits one tree per class and stage


def splits(encoder, num_train=600, num_test=300):
    codes_train, factors_train = encoder.sample(num_train, seed=1)
    codes_test, factors_test = encoder.sample(num_test, seed=2)
    return codes_train, factors_train, codes_test, factors_test


def test_disentangled_codes_score_near_one(make_encoder):
    scores = dci(*splits(make_encoder(sizes=SIZES, noise_dims=3)), np.random.default_rng(0), n_jobs=1)
    assert scores["dci_disentanglement"] > 0.9
    assert scores["dci_informativeness_train"] == 1.0
    assert scores["dci_informativeness_test"] == 1.0


def test_rotation_lowers_disentanglement_not_informativeness(make_encoder):
    straight = dci(*splits(make_encoder(sizes=SIZES, noise_dims=3)), np.random.default_rng(0), n_jobs=1)
    mixed = dci(*splits(make_encoder(sizes=SIZES, noise_dims=3, rotate=True)), np.random.default_rng(0), n_jobs=1)
    assert mixed["dci_disentanglement"] < 0.5 * straight["dci_disentanglement"]
    assert mixed["dci_completeness"] < 0.5 * straight["dci_completeness"]
    assert mixed["dci_informativeness_test"] > 0.8  # rotated-in noise blurs the factors a little


def test_noise_is_uninformative(make_encoder):
    noise = make_encoder(sizes=SIZES, noise_dims=6, factor_latents=False)
    scores = dci(*splits(noise), np.random.default_rng(0), n_jobs=1)
    chance = np.mean([1 / s for s in SIZES])
    assert scores["dci_informativeness_test"] < chance + 0.1
    assert scores["dci_disentanglement"] < 0.3


def test_same_seed_gives_same_scores_serial_or_parallel(make_encoder):
    data = splits(make_encoder(sizes=SIZES, noise_dims=2, rotate=True), num_train=200, num_test=100)
    serial = dci(*data, np.random.default_rng(4), n_jobs=1)
    parallel = dci(*data, np.random.default_rng(4), n_jobs=2)
    assert serial == parallel
    assert all(type(v) is float for v in serial.values())


def test_one_latent_per_factor_is_perfect():
    importance = np.vstack([np.diag([0.5, 0.3, 0.2]), np.zeros((2, 3))])  # two unused latents
    assert disentanglement(importance) == pytest.approx(1.0, abs=1e-8)
    assert completeness(importance) == pytest.approx(1.0, abs=1e-8)


def test_uniform_importance_scores_zero():
    importance = np.full((4, 3), 0.25)
    assert disentanglement(importance) == pytest.approx(0.0, abs=1e-12)
    assert completeness(importance) == pytest.approx(0.0, abs=1e-12)


def test_zero_importance_counts_as_uniform():
    importance = np.zeros((4, 3))
    assert disentanglement(importance) == pytest.approx(0.0, abs=1e-12)
    assert completeness(importance) == pytest.approx(0.0, abs=1e-12)


def test_one_latent_for_all_factors_is_complete_not_disentangled():
    importance = np.zeros((4, 3))
    importance[0] = 1.0
    assert disentanglement(importance) == pytest.approx(0.0, abs=1e-8)
    assert completeness(importance) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize(
    ("factors_train", "message"),
    [
        (np.zeros((20, 1), int) + np.arange(20)[:, None] % 2, "DCI: needs at least two latents and two factors"),
        (np.column_stack([np.arange(20) % 2, np.zeros(20, int)]), "DCI: factor 1 takes a single value in factors_tr"),
        (np.column_stack([np.arange(19) % 2, np.arange(19) % 3]), "DCI: factors_train has 19 rows but the codes have"),
    ],
)
def test_bad_input_is_refused(factors_train, message):
    codes = np.random.default_rng(0).normal(size=(20, 3))
    factors_test = np.zeros((5, factors_train.shape[1]), int)
    with pytest.raises(ValueError, match=message):
        dci(codes, factors_train, codes[:5], factors_test, np.random.default_rng(0))


def test_splits_of_different_width_are_refused():
    codes = np.random.default_rng(0).normal(size=(20, 3))
    factors = np.column_stack([np.arange(20) % 2, np.arange(20) % 3])
    with pytest.raises(ValueError, match="DCI: train and test splits differ in width"):
        dci(codes, factors, codes[:, :2], factors, np.random.default_rng(0))
