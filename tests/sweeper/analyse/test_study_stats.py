"""The study's analyses on synthetic tables whose answers are known."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats

from sweeper.analyse.study_stats import (
    beats,
    bootstrap_shares,
    dataset_transfer,
    find_configurations,
    nested_shares,
    score_agreement,
    seed_transfer,
    selection_by,
    spearman_matrix,
    unsupervised_correlations,
    variance_shares,
)


def study(effects: dict[str, np.ndarray], objectives: int, hyperparameters: int, seeds: int, datasets=("d",)):
    """A study table: every dataset x objective x beta x seed, and a column per score.

    effects[score] has shape (datasets, objectives * hyperparameters * seeds) in that nested order.
    """
    rows = len(datasets) * objectives * hyperparameters * seeds
    grid = np.indices((len(datasets), objectives, hyperparameters, seeds)).reshape(4, -1)
    columns = {
        "dataset": [datasets[d] for d in grid[0]],
        "objective": [f"objective_{o:03d}" for o in grid[1]],
        "beta": (grid[2] + 1.0).tolist(),
        "seed": grid[3].tolist(),
    }
    columns |= {name: np.asarray(values, dtype=np.float64).reshape(rows) for name, values in effects.items()}
    return pa.table(columns)


def nested_draw(rng, objectives, hyperparameters, seeds, var_objective, var_hyperparameter, var_seed):
    """An objective effect + a hyperparameter effect + seed noise of the given variances, nested."""
    objective = rng.normal(0, np.sqrt(var_objective), objectives)
    hyperparameter = rng.normal(0, np.sqrt(var_hyperparameter), (objectives, hyperparameters))
    seed = rng.normal(0, np.sqrt(var_seed), (objectives, hyperparameters, seeds))
    return (objective[:, None, None] + hyperparameter[:, :, None] + seed).reshape(-1)


# -- variance shares ----------------------------------------------------------------------


def test_nested_shares_by_hand():
    # Objective A: configurations [1, 3] and [5, 7]; objective B: [10, 12]. Grand mean 38/6.
    values = np.array([1.0, 3.0, 5.0, 7.0, 10.0, 12.0])
    objective = np.array([0, 0, 0, 0, 1, 1])
    configuration = np.array([0, 0, 1, 1, 2, 2])
    grand = 38 / 6
    total = sum((v - grand) ** 2 for v in values)
    between_objectives = 4 * (4 - grand) ** 2 + 2 * (11 - grand) ** 2  # means 4 and 11
    within = 2 * (2 - 4) ** 2 + 2 * (6 - 4) ** 2 + 2 * (11 - 11) ** 2  # configuration means 2, 6, 11
    seeds = 6 * 1.0  # every value is 1 from its configuration's mean
    assert between_objectives + within + seeds == pytest.approx(total)
    shares = nested_shares(values, objective, configuration)
    assert shares == pytest.approx([between_objectives / total, within / total, seeds / total], abs=1e-12)
    # The rows' order and missing values change nothing.
    order = np.array([5, 2, 0, 4, 3, 1])
    with_nan = np.r_[values[order], np.nan]
    again = nested_shares(with_nan, np.r_[objective[order], 0], np.r_[configuration[order], 0])
    assert again == pytest.approx(shares, abs=1e-12)


def test_shares_of_known_variances_are_found_within_sampling_error():
    """Objective 1, hyperparameter 2, seed 1: shares 0.25, 0.5, 0.25. With 100 objectives x 20 values x
    20 seeds the shares' spread over draws is about 0.02 (objective), 0.015 and 0.008."""
    rng = np.random.default_rng(0)
    score = nested_draw(rng, 100, 20, 20, 1.0, 2.0, 1.0)
    table = study({"disent/x": score[None, :]}, 100, 20, 20)
    shares = variance_shares(table, ["disent/x"], rng, replicates=200).to_pylist()[0]
    assert shares["models"] == 40000 and shares["configurations"] == 2000
    assert shares["objective"] == pytest.approx(0.25, abs=0.05)
    assert shares["hyperparameter"] == pytest.approx(0.5, abs=0.04)
    assert shares["seed"] == pytest.approx(0.25, abs=0.025)
    assert shares["objective"] + shares["hyperparameter"] + shares["seed"] == pytest.approx(1.0)


def test_the_intervals_cover_the_shares_the_seeds_blur():
    """Given the effects as drawn, the shares the seeds' noise blurs are those of the effects' nested sums of
    squares (an objective's hyperparameter effects have a mean of their own, which is the objective's) and
    N x the seeds' variance. In 100 studies of 6 objectives x 6 values x 10 seeds (as small as a real
    study) the 95% intervals hold the objective's and the hyperparameter's share about 95 times; the
    seed's about 85: resampling 10 seeds understates how much their share varies by about a sixth."""
    rng = np.random.default_rng(8)
    objectives, values, seeds = 6, 6, 10
    configuration = np.repeat(np.arange(objectives * values), seeds)
    objective = configuration // values
    held = {name: 0 for name in ("objective", "hyperparameter", "seed")}
    for _ in range(100):
        effect_o = rng.normal(0, 1, objectives)[objective]
        effect_h = rng.normal(0, 1.5, objectives * values)[configuration]
        noise = rng.normal(0, 1, configuration.size)
        table = study({"s": (effect_o + effect_h + noise)[None, :]}, objectives, values, seeds)
        mean_h = np.bincount(objective, effect_h)[objective] / (values * seeds)
        of_objective = effect_o + mean_h
        truth = np.array(
            [((of_objective - of_objective.mean()) ** 2).sum(), ((effect_h - mean_h) ** 2).sum(), configuration.size]
        )
        truth /= truth.sum()
        row = variance_shares(table, ["s"], rng, replicates=400).to_pylist()[0]
        for name, value in zip(held, truth):
            held[name] += row[f"{name}_low"] <= value <= row[f"{name}_high"]
    assert held["objective"] >= 88 and held["hyperparameter"] >= 88 and held["seed"] >= 75, held


def test_without_seed_noise_the_bootstrap_has_nothing_to_resample():
    rng = np.random.default_rng(1)
    score = nested_draw(rng, 3, 4, 5, 1.0, 1.0, 0.0)
    configuration = np.repeat(np.arange(12), 5)
    boot = bootstrap_shares(score, configuration // 4, configuration, rng, replicates=50)
    assert boot.shape == (50, 3)
    assert np.allclose(boot, nested_shares(score, configuration // 4, configuration), atol=1e-12)
    assert np.allclose(boot[:, 2], 0.0, atol=1e-12)
    # With seed noise, the resamples spread.
    noisy = score + rng.normal(0, 1, score.size)
    assert bootstrap_shares(noisy, configuration // 4, configuration, rng, replicates=50)[:, 2].std() > 0.01


def test_a_constant_score_has_no_shares():
    table = study({"disent/x": np.ones((1, 2 * 2 * 3))}, 2, 2, 3)
    row = variance_shares(table, ["disent/x"], np.random.default_rng(0), replicates=10).to_pylist()[0]
    assert row["objective"] is None and row["seed_low"] is None


# -- agreement and unsupervised selection ---------------------------------------------------


def test_the_spearman_matrix_is_scipys_pair_by_pair_with_missing_values_and_constants():
    rng = np.random.default_rng(9)
    first = rng.normal(size=(40, 3))
    first[:, 1] = np.round(first[:, 0])  # ties
    first[5, 2] = np.nan
    second = np.column_stack([first[:, 0] ** 3, rng.normal(size=40), np.ones(40)])
    second[[1, 7], 1] = np.nan
    matrix = spearman_matrix(first, second)
    for i in range(3):
        for j in range(2):
            both = np.isfinite(first[:, i]) & np.isfinite(second[:, j])
            expected = scipy.stats.spearmanr(first[both, i], second[both, j]).statistic
            assert matrix[i, j] == pytest.approx(expected, abs=1e-12), (i, j)
    assert np.isnan(matrix[:, 2]).all()  # a constant score correlates with nothing


def test_score_agreement_per_dataset():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(2, 2 * 3 * 4))
    table = study({"a": base, "b": np.exp(base), "c": -base, "d": rng.normal(size=(2, 24))}, 2, 3, 4, ("p", "q"))
    matrices = score_agreement(table, ["a", "b", "c", "d"])
    assert set(matrices) == {"p", "q"}
    for matrix in matrices.values():
        assert matrix[0, 1] == pytest.approx(1.0) and matrix[0, 2] == pytest.approx(-1.0)
        assert abs(matrix[0, 3]) < 0.7 and np.allclose(np.diag(matrix), 1.0)


def test_unsupervised_scores_against_supervised_per_objective():
    rng = np.random.default_rng(3)
    mig = rng.normal(size=(1, 2 * 5 * 4))
    udr = mig.copy()
    udr[0, 20:] = rng.normal(size=20)  # the second objective's UDR is unrelated to its MIG
    table = study({"disent/mig": mig, "udr": udr, "disent/gaussian_total_correlation": -mig}, 2, 5, 4)
    rows = unsupervised_correlations(table, ["disent/mig", "udr", "disent/gaussian_total_correlation"]).to_pylist()
    found = {(r["objective"], r["unsupervised"]): r["spearman"] for r in rows}
    assert {r["supervised"] for r in rows} == {"disent/mig"} and all(r["models"] == 20 for r in rows)
    assert found[("objective_000", "udr")] == pytest.approx(1.0)
    assert found[("objective_000", "disent/gaussian_total_correlation")] == pytest.approx(-1.0)
    assert abs(found[("objective_001", "udr")]) < 0.6


def test_choosing_by_the_score_itself_is_the_oracle_and_by_its_opposite_the_worst():
    rng = np.random.default_rng(4)
    score = rng.normal(size=(1, 2 * 3 * 5))
    table = study({"disent/mig": score, "udr": score, "contrary": -score}, 2, 3, 5)
    picked = selection_by(table, "udr", "disent/mig").to_pylist()
    assert len(picked) == 2
    by_seed = score.reshape(2, 3, 5)
    for row, per_config in zip(picked, by_seed):
        assert row["configurations"] == 3
        assert row["chosen"] == row["best_seed"] == pytest.approx(per_config.max(axis=1).mean())
        assert row["random_seed"] == pytest.approx(per_config.mean())
    worst = selection_by(table, "contrary", "disent/mig").to_pylist()
    assert [r["chosen"] for r in worst] == pytest.approx(by_seed.min(axis=2).mean(axis=1))
    # Lower is better: the oracle is the lowest score, and ties in the chooser go to the lower seed.
    flat = study({"s": score, "tied": np.zeros_like(score)}, 2, 3, 5)
    lowest = selection_by(flat, "tied", "s", maximize=False).to_pylist()
    assert [r["best_seed"] for r in lowest] == pytest.approx(by_seed.min(axis=2).mean(axis=1))
    assert [r["chosen"] for r in lowest] == pytest.approx(by_seed[:, :, 0].mean(axis=1))


# -- transfer -------------------------------------------------------------------------------


def test_beats_counts_ties_half():
    assert beats(np.array([3.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx((2 + 0.5) / 4)
    assert beats(np.array([3.0]), np.array([1.0, 2.0, 3.0, 4.0]), maximize=False) == pytest.approx((1 + 0.5) / 4)


def test_agreeing_datasets_transfer_with_probability_one():
    rng = np.random.default_rng(5)
    quality = rng.normal(size=3 * 6)  # one ranking of the 18 configurations, shared by all datasets
    per_dataset = [
        np.repeat(quality * scale + shift, 4) + rng.normal(0, 1e-3, 72) for scale, shift in ((1, 0), (2, 5), (0.5, -1))
    ]
    table = study({"disent/mig": np.stack(per_dataset)}, 3, 6, 4, ("a", "b", "c"))
    rows = dataset_transfer(table, "disent/mig").to_pylist()
    assert len(rows) == 6 and {(r["from_dataset"], r["to_dataset"]) for r in rows} == {
        (x, y) for x in "abc" for y in "abc" if x != y
    }
    best = find_configurations(table).names[int(np.argmax(quality))]
    for row in rows:
        assert row["probability"] == 1.0 and row["configurations"] == 18 and row["best_configuration"] == best
    # Lower is better: the worst configuration is now chosen, and it is still the best on the others.
    assert all(r["probability"] == 1.0 for r in dataset_transfer(table, "disent/mig", maximize=False).to_pylist())


def test_independent_datasets_transfer_with_probability_near_a_half():
    """30 datasets whose configurations rank independently: 870 ordered pairs, each a draw with mean 0.5."""
    rng = np.random.default_rng(6)
    names = tuple(f"d{i:02d}" for i in range(30))
    scores = np.repeat(rng.normal(size=(30, 2 * 10)), 3, axis=1) + rng.normal(0, 0.5, (30, 60))
    rows = dataset_transfer(study({"s": scores}, 2, 10, 3, names), "s").to_pylist()
    assert len(rows) == 870
    assert np.mean([r["probability"] for r in rows]) == pytest.approx(0.5, abs=0.03)


def test_seed_transfer_is_one_when_seeds_agree_and_near_a_half_when_only_the_seed_matters():
    rng = np.random.default_rng(7)
    quality = rng.normal(size=2 * 8)
    agreeing = np.repeat(quality, 6) + rng.normal(0, 1e-3, 96)
    luck = rng.normal(size=96 * 10)  # 10 datasets of pure seed noise
    table = study({"s": agreeing[None, :]}, 2, 8, 6)
    (row,) = seed_transfer(table, "s").to_pylist()
    assert row == {"dataset": "d", "seeds": 6, "seed_pairs": 30, "probability": 1.0, "lowest": 1.0, "highest": 1.0}
    noise = seed_transfer(study({"s": luck.reshape(10, 96)}, 2, 8, 6, tuple("abcdefghij")), "s").to_pylist()
    assert np.mean([r["probability"] for r in noise]) == pytest.approx(0.5, abs=0.05)


def test_configurations_are_named_by_objective_and_their_set_hyperparameters():
    table = pa.table(
        {
            "objective": ["beta_vae", "annealed_vae", "beta_vae", "annealed_vae"],
            "beta": [4.0, None, 1.0, None],
            "gamma": [None, 1000.0, None, 1000.0],
            "c_max": [None, 5.0, None, 25.0],
            "lambda_od": pa.array([None] * 4, pa.float64()),
        }
    )
    found = find_configurations(table)
    assert found.names == [
        "annealed_vae gamma=1000 c_max=5", "annealed_vae gamma=1000 c_max=25", "beta_vae beta=1", "beta_vae beta=4"
    ]
    assert found.index.tolist() == [3, 0, 2, 1]
    assert found.objective_index().tolist() == [1, 0, 1, 0]
