"""Picks and statistics on hand-made results tables whose answers are known."""

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats

from sweeper.analyse import selection
from sweeper.analyse.results import TRIAL_SCHEMA
from sweeper.analyse.selection import (
    BEST_SEED,
    BETA_TRADEOFF,
    MEDIAN_SEED,
    PARETO,
    SEED_SENSITIVITY,
    TOP_UDR,
    UDR_RANKING,
    WORST_SEED,
    UnknownScore,
)


def results(rows: list[dict]) -> pa.Table:
    """A results table as sweeper.analyse.results reads it: trial columns, then float64 metrics (null if absent)."""
    full = []
    for i, row in enumerate(rows):
        base = {name: None for name in TRIAL_SCHEMA.names}
        base.update(run_id=f"run{i}", status="FINISHED", capacity=0.0, latent_dim=10)
        full.append({**base, **row})
    metrics = sorted({k for r in rows for k in r} - set(TRIAL_SCHEMA.names))
    schema = pa.schema(list(TRIAL_SCHEMA) + [(m, pa.float64()) for m in metrics])
    return pa.Table.from_pylist(full, schema=schema)


def sweep(scores: dict[float, list[float]], recon: dict[float, list[float]]) -> pa.Table:
    """Trials of several betas, seed i taking the i-th score and recon of its beta."""
    return results(
        [
            {"run_id": f"b{beta:g}s{seed}", "beta": beta, "seed": seed, "disent/mig": s, "recon": r}
            for beta in scores
            for seed, (s, r) in enumerate(zip(scores[beta], recon[beta]))
        ]
    )


# -- median, best, worst ------------------------------------------------------------------


def test_median_seed_of_an_odd_count_is_the_middle_score():
    assert selection.median_index(np.array([0.3, 0.1, 0.2]), np.array([0, 1, 2])) == 2


@pytest.mark.parametrize(
    ("scores", "expected_seed"),
    [
        ([0.1, 0.4, 0.2, 0.3], 2),  # middle scores 0.2 (seed 2) and 0.3 (seed 3): the lower seed
        ([0.1, 0.3, 0.2, 0.4], 1),  # middle scores 0.2 (seed 2) and 0.3 (seed 1): the lower seed, higher score
    ],
)
def test_median_seed_of_an_even_count_is_the_middle_trial_with_the_lower_seed(scores, expected_seed):
    seeds = np.arange(len(scores))
    assert seeds[selection.median_index(np.array(scores), seeds)] == expected_seed


def test_median_seed_skips_missing_scores_and_breaks_equal_scores_by_seed():
    scores = np.array([np.nan, 0.5, 0.5, 0.5, 0.9])
    seeds = np.array([7, 4, 3, 5, 1])
    # Finite trials sorted by (score, seed): seeds 3, 4, 5, 1; the middle pair is seeds 4 and 5.
    assert seeds[selection.median_index(scores, seeds)] == 4


def test_best_and_worst_seed_follow_the_mode_and_ties_go_to_the_lower_seed():
    scores = np.array([0.2, 0.9, 0.9, 0.1, np.nan])
    seeds = np.array([0, 3, 1, 2, 4])
    assert seeds[selection.best_index(scores, seeds)] == 1
    assert seeds[selection.worst_index(scores, seeds)] == 2
    assert seeds[selection.best_index(scores, seeds, maximize=False)] == 2
    assert seeds[selection.worst_index(scores, seeds, maximize=False)] == 1


# -- Pareto front -------------------------------------------------------------------------


def test_pareto_front_keeps_what_nothing_beats_in_both():
    recon = np.array([10.0, 20.0, 30.0, 20.0, 5.0, np.nan, 40.0])
    score = np.array([0.1, 0.5, 0.4, 0.5, 0.05, 0.9, 0.6])
    # 30/0.4 is beaten by 20/0.5; the two 20/0.5 tie and both stay; NaN never counts.
    assert selection.pareto_front(recon, score).tolist() == [True, True, False, True, True, False, True]


def test_pareto_front_with_a_lower_is_better_score():
    recon = np.array([10.0, 20.0, 30.0])
    score = np.array([3.0, 1.0, 2.0])
    assert selection.pareto_front(recon, score, maximize=False).tolist() == [True, True, False]


# -- eta squared --------------------------------------------------------------------------


def test_eta_squared_matches_the_anova_by_hand_and_scipy():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    # SS_total = 17.5, SS_between = 3 * 1.5^2 * 2 = 13.5.
    assert selection.eta_squared(values, labels) == pytest.approx(13.5 / 17.5)
    f = scipy.stats.f_oneway(values[:3], values[3:]).statistic
    assert selection.eta_squared(values, labels) == pytest.approx(f * 1 / (f * 1 + 4))


def test_eta_squared_is_one_when_seeds_agree_and_zero_when_configurations_do():
    labels = np.array([0, 0, 1, 1])
    assert selection.eta_squared(np.array([1.0, 1.0, 5.0, 5.0]), labels) == 1.0
    assert selection.eta_squared(np.array([1.0, 5.0, 1.0, 5.0]), labels) == 0.0


@pytest.mark.parametrize(
    ("values", "labels"),
    [
        ([1.0, 2.0, 3.0], [0, 0, 0]),  # one configuration: nothing to explain by it
        ([2.0, 2.0, 2.0, 2.0], [0, 0, 1, 1]),  # no variance at all
        ([1.0, 2.0, 3.0], [0, 1, 2]),  # one seed per configuration: nothing left to the seed
        ([1.0, np.nan, 3.0, np.nan], [0, 0, 1, 1]),  # the same once missing values are dropped
    ],
)
def test_eta_squared_is_nan_where_it_says_nothing(values, labels):
    assert math.isnan(selection.eta_squared(np.array(values), np.array(labels)))


# -- statistics and correlations ----------------------------------------------------------


def test_seed_statistics_per_configuration():
    table = sweep({1.0: [0.1, 0.2, 0.6], 4.0: [0.5]}, {1.0: [10, 20, 30], 4.0: [40]})
    stats = {(r["beta"], r["metric"]): r for r in selection.seed_statistics(table).to_pylist()}
    mig = stats[(1.0, "disent/mig")]
    assert mig["n"] == 3
    assert mig["mean"] == pytest.approx(0.3)
    assert mig["median"] == pytest.approx(0.2)
    assert mig["std"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert (mig["min"], mig["max"]) == (0.1, 0.6)
    single = stats[(4.0, "recon")]
    assert single["n"] == 1 and single["std"] is None and single["median"] == 40


def test_rank_correlations_of_agreeing_opposite_and_constant_scores():
    table = results(
        [
            {"beta": 1.0, "seed": i, "disent/a": x, "disent/b": x**3, "disent/c": -x, "disent/d": 1.0}
            for i, x in enumerate([0.1, 0.5, 0.2, 0.9])
        ]
    )
    names = ["disent/a", "disent/b", "disent/c", "disent/d"]
    matrix = selection.rank_correlations(table, names)
    assert matrix[0, 1] == pytest.approx(1.0)
    assert matrix[0, 2] == pytest.approx(-1.0)
    assert np.isnan(matrix[0, 3]) and np.isnan(matrix[3, 3])
    assert np.allclose(matrix, matrix.T, equal_nan=True)


def test_variance_shares_split_each_score_between_configuration_and_seed():
    table = sweep({1.0: [1.0, 2.0, 3.0], 2.0: [4.0, 5.0, 6.0]}, {1.0: [1, 1, 1], 2.0: [1, 1, 1]})
    shares = {r["metric"]: r for r in selection.variance_shares(table, ["disent/mig", "recon"]).to_pylist()}
    assert shares["disent/mig"]["configuration_share"] == pytest.approx(13.5 / 17.5)
    assert shares["disent/mig"]["seed_share"] == pytest.approx(4 / 17.5)
    assert shares["recon"]["configuration_share"] is None  # constant: no variance to share


# -- the picks ----------------------------------------------------------------------------


@pytest.fixture
def two_betas() -> pa.Table:
    """beta 1 reconstructs better, beta 8 disentangles better: both on the Pareto front."""
    table = sweep(
        {1.0: [0.10, 0.30, 0.20], 8.0: [0.70, 0.40, 0.50], 4.0: [0.05, 0.15, 0.10]},
        {1.0: [100, 110, 105], 8.0: [300, 310, 305], 4.0: [200, 210, 205]},
    )
    failed = results(
        [
            {
                "run_id": "failed",
                "beta": 8.0,
                "seed": 3,
                "status": "FAILED",
                "error": "boom",
                "disent/mig": 0.99,
                "recon": 1.0,
            }
        ]
    )
    return pa.concat_tables([table, failed.select(table.column_names)])


def roles(picks, kind):
    return {(p.beta, p.role): (p.seed, p.run_id) for p in picks.of(kind)}


def test_beta_tradeoff_picks_each_configurations_median_seed_and_its_pareto_front(two_betas):
    picks = selection.select(two_betas, "disent/mig")
    tradeoff = roles(picks, BETA_TRADEOFF)
    assert tradeoff[(1.0, MEDIAN_SEED)][0] == 2  # scores 0.1, 0.3, 0.2
    assert tradeoff[(8.0, MEDIAN_SEED)][0] == 2  # 0.7, 0.4, 0.5: the failed 0.99 takes no part
    assert tradeoff[(4.0, MEDIAN_SEED)][0] == 2
    # beta 4 has worse recon than beta 1 and a worse score: off the front.
    assert {beta for beta, role in tradeoff if role == PARETO} == {1.0, 8.0}
    summary = {r["beta"]: r for r in selection.configuration_summary(two_betas, picks).to_pylist()}
    assert summary[8.0]["seeds"] == 3 and summary[8.0]["score_median"] == pytest.approx(0.5)
    assert [summary[b]["pareto"] for b in (1.0, 4.0, 8.0)] == [True, False, True]


def test_seed_sensitivity_picks_best_median_and_worst(two_betas):
    picks = selection.select(two_betas, "disent/mig")
    sens = roles(picks, SEED_SENSITIVITY)
    assert [sens[(8.0, r)][0] for r in (BEST_SEED, MEDIAN_SEED, WORST_SEED)] == [0, 2, 1]
    assert [sens[(1.0, r)][0] for r in (BEST_SEED, MEDIAN_SEED, WORST_SEED)] == [1, 2, 0]
    rows = {r["beta"]: r for r in selection.seed_table(picks).to_pylist()}
    assert rows[8.0]["spread"] == pytest.approx(0.3)
    lower = roles(selection.select(two_betas, "disent/mig", maximize=False), SEED_SENSITIVITY)
    assert [lower[(8.0, r)][0] for r in (BEST_SEED, WORST_SEED)] == [1, 0]


def test_tags_join_every_kind_and_role_of_a_run(two_betas):
    tags = selection.select(two_betas, "disent/mig").tags()
    assert tags["b1s2"] == {"selected": "beta_tradeoff,seed_sensitivity", "role": "median_seed,pareto"}
    assert tags["b4s2"] == {"selected": "beta_tradeoff,seed_sensitivity", "role": "median_seed"}
    assert tags["b8s0"] == {"selected": "seed_sensitivity", "role": "best_seed"}
    assert "failed" not in tags
    picked = selection.with_picks(two_betas, selection.select(two_betas, "disent/mig"))
    by_run = dict(zip(picked["run_id"].to_pylist(), picked["role"].to_pylist()))
    assert by_run["b1s2"] == "median_seed,pareto" and by_run["failed"] is None


def test_udr_ranking_picks_the_top_udr_seed_of_each_configuration(two_betas):
    udr = {"b1s0": 0.2, "b1s1": 0.9, "b1s2": 0.5, "b8s0": 0.3, "b8s1": 0.3}
    table = two_betas.append_column(
        "udr", pa.array([udr.get(r) for r in two_betas["run_id"].to_pylist()], pa.float64())
    )
    ranking = roles(selection.select(table, "disent/mig"), UDR_RANKING)
    assert ranking == {(1.0, TOP_UDR): (1, "b1s1"), (8.0, TOP_UDR): (0, "b8s0")}  # beta 4 has no UDR


def test_a_score_no_trial_reported_is_refused_with_the_known_ones(two_betas):
    with pytest.raises(UnknownScore, match="'disent/sap'.*disent/mig") as caught:
        selection.select(two_betas, "disent/sap")
    assert caught.value.exit_code == 2
    only_failed = results([{"beta": 1.0, "seed": 0, "disent/sap": 0.5, "status": "FAILED"}, {"beta": 1.0, "seed": 1}])
    with pytest.raises(UnknownScore):
        selection.select(only_failed, "disent/sap")


def test_the_study_front_is_marked_next_to_the_post_hoc_front(two_betas):
    from sweeper.analyse.study import FrontTrial, Study

    without = selection.configuration_summary(two_betas, selection.select(two_betas, "disent/mig"))
    assert "study_front" not in without.column_names  # a grid has no study
    # C_max is fixed here, so the study's trials name only beta; beta 4 is the front Optuna saw.
    study = Study(states={"COMPLETE": 3}, front=[FrontTrial(2, {"beta": 4.0}, (0.1, 0.9))])
    picks = selection.select(two_betas, "disent/mig", study=study)
    summary = {r["beta"]: r for r in selection.configuration_summary(two_betas, picks).to_pylist()}
    assert [summary[b]["study_front"] for b in (1.0, 4.0, 8.0)] == [False, True, False]
    assert [summary[b]["pareto"] for b in (1.0, 4.0, 8.0)] == [True, False, True]
