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
    MEDIAN_SEED,
    PARETO,
    PARETO_OVERALL,
    SEED_SENSITIVITY,
    TOP_UDR,
    TRADEOFF,
    UDR_RANKING,
    WORST_SEED,
    UnknownScore,
)
from sweeper.analyse.study import FrontTrial, Study
from trainables.trial import Configuration


def results(rows: list[dict]) -> pa.Table:
    """A results table as sweeper.analyse.results reads it: trial columns, then float64 metrics (null if absent).
    A row without an objective is a beta_vae's."""
    full = []
    for i, row in enumerate(rows):
        base = {name: None for name in TRIAL_SCHEMA.names}
        base.update(run_id=f"run{i}", status="FINISHED", objective="beta_vae", latent_dim=10)
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
    stats = {(r["configuration"], r["metric"]): r for r in selection.seed_statistics(table).to_pylist()}
    assert {r["objective"] for r in stats.values()} == {"beta_vae"}
    mig = stats[("beta_vae beta=1", "disent/mig")]
    assert mig["n"] == 3
    assert mig["mean"] == pytest.approx(0.3)
    assert mig["median"] == pytest.approx(0.2)
    assert mig["std"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert (mig["min"], mig["max"]) == (0.1, 0.6)
    single = stats[("beta_vae beta=4", "recon")]
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
    assert {(r["objective"], r["configurations"]) for r in shares.values()} == {("beta_vae", 2)}
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
    return {(p.configuration.weight("beta"), p.role): (p.seed, p.run_id) for p in picks.of(kind)}


def only_tradeoff(table, picks) -> dict[float, dict]:
    """beta -> its row of the one objective's trade-off table."""
    [(tradeoff, rows)] = selection.tradeoff_tables(table, picks)
    assert (tradeoff.name, tradeoff.swept) == ("beta_vae", "beta") and rows.column_names[0] == "beta"
    return {r["beta"]: r for r in rows.to_pylist()}


def test_tradeoff_picks_each_configurations_median_seed_and_its_pareto_front(two_betas):
    picks = selection.select(two_betas, "disent/mig")
    tradeoff = roles(picks, TRADEOFF)
    assert tradeoff[(1.0, MEDIAN_SEED)][0] == 2  # scores 0.1, 0.3, 0.2
    assert tradeoff[(8.0, MEDIAN_SEED)][0] == 2  # 0.7, 0.4, 0.5: the failed 0.99 takes no part
    assert tradeoff[(4.0, MEDIAN_SEED)][0] == 2
    # beta 4 has worse recon than beta 1 and a worse score: off the front.
    assert {beta for beta, role in tradeoff if role == PARETO} == {1.0, 8.0}
    assert not picks.of(TRADEOFF, PARETO_OVERALL)  # one objective: its front is the front of all
    summary = only_tradeoff(two_betas, picks)
    assert list(summary) == [1.0, 4.0, 8.0]  # along beta
    assert summary[8.0]["seeds"] == 3 and summary[8.0]["score_median"] == pytest.approx(0.5)
    assert [summary[b]["pareto"] for b in (1.0, 4.0, 8.0)] == [True, False, True]
    assert "pareto_overall" not in summary[1.0]


def test_seed_sensitivity_picks_best_median_and_worst(two_betas):
    picks = selection.select(two_betas, "disent/mig")
    sens = roles(picks, SEED_SENSITIVITY)
    assert [sens[(8.0, r)][0] for r in (BEST_SEED, MEDIAN_SEED, WORST_SEED)] == [0, 2, 1]
    assert [sens[(1.0, r)][0] for r in (BEST_SEED, MEDIAN_SEED, WORST_SEED)] == [1, 2, 0]
    rows = {r["configuration"]: r for r in selection.seed_table(picks).to_pylist()}
    assert rows["beta_vae beta=8"]["spread"] == pytest.approx(0.3)
    lower = roles(selection.select(two_betas, "disent/mig", maximize=False), SEED_SENSITIVITY)
    assert [lower[(8.0, r)][0] for r in (BEST_SEED, WORST_SEED)] == [1, 0]


def test_tags_join_every_kind_and_role_of_a_run(two_betas):
    tags = selection.select(two_betas, "disent/mig").tags()
    assert tags["b1s2"] == {"selected": "tradeoff,seed_sensitivity", "role": "median_seed,pareto"}
    assert tags["b4s2"] == {"selected": "tradeoff,seed_sensitivity", "role": "median_seed"}
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
    without = only_tradeoff(two_betas, selection.select(two_betas, "disent/mig"))
    assert "study_front" not in without[1.0]  # a grid has no study
    # A study of one objective holds no objective param; beta 4 is the front Optuna saw.
    study = Study(states={"COMPLETE": 3}, front=[FrontTrial(2, {"beta_vae.beta": 4.0}, (0.1, 0.9))])
    summary = only_tradeoff(two_betas, selection.select(two_betas, "disent/mig", study=study))
    assert [summary[b]["study_front"] for b in (1.0, 4.0, 8.0)] == [False, True, False]
    assert [summary[b]["pareto"] for b in (1.0, 4.0, 8.0)] == [True, False, True]


BETA_4 = Configuration.of("beta_vae", {"beta": 4.0})
ANNEALED_25 = Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 25.0})
TCVAE_4 = Configuration.of("beta_tcvae", {"beta": 4.0})


@pytest.mark.parametrize(
    ("params", "on_front"),
    [
        ({"objective": "beta_vae", "beta_vae.beta": 4.0}, [BETA_4]),
        ({"objective": "beta_tcvae", "beta_tcvae.beta": 4.0}, [TCVAE_4]),  # the same weight, another objective
        ({"objective": "annealed_vae", "annealed_vae.c_max": 25.0}, [ANNEALED_25]),  # gamma held fixed
        ({"beta_vae.beta": 4.0}, [BETA_4]),  # a study of one objective names none: its params name it
        # A study of an earlier release: beta and C_max, as from_beta_and_capacity reads them.
        ({"beta": 4.0}, [BETA_4, ANNEALED_25]),
        ({"beta": 4.0, "capacity": 0.0}, [BETA_4]),
        ({"beta": 4.0, "capacity": 25.0}, [ANNEALED_25]),
    ],
)
def test_the_study_front_is_read_from_its_params_of_either_release(params, on_front):
    study = Study(states={"COMPLETE": 1}, front=[FrontTrial(0, params, (1.0,))])
    candidates = [BETA_4, ANNEALED_25, TCVAE_4]
    assert [c for c in candidates if study.on_front(c)] == on_front


# -- several objectives -------------------------------------------------------------------


@pytest.fixture
def two_objectives() -> pa.Table:
    """beta_vae beta 1 and 4, factor_vae gamma 10 and 40, two seeds each; numbers chosen for the test below."""
    mig = {("beta_vae", 1.0): [0.1, 0.3], ("beta_vae", 4.0): [0.5, 0.7],
           ("factor_vae", 10.0): [0.2, 0.6], ("factor_vae", 40.0): [0.3, 0.5]}
    recon = {("beta_vae", 1.0): [100, 102], ("beta_vae", 4.0): [110, 112],
             ("factor_vae", 10.0): [150, 152], ("factor_vae", 40.0): [120, 122]}
    weight = {"beta_vae": "beta", "factor_vae": "gamma"}
    return results(
        [
            {"run_id": f"{kind}-{value:g}-{seed}", "objective": kind, weight[kind]: value, "seed": seed,
             "disent/mig": score, "recon": recon[(kind, value)][seed]}
            for (kind, value), scores in mig.items()
            for seed, score in enumerate(scores)
        ]
    )


def test_configurations_group_by_objective_and_each_trades_off_along_its_own_weight(two_objectives):
    keys, labels = selection.configurations(two_objectives)
    assert [k.label() for k in keys] == [
        "beta_vae beta=1", "beta_vae beta=4", "factor_vae gamma=10", "factor_vae gamma=40"
    ]
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    groups = selection.tradeoffs(keys)
    assert [(g.name, g.swept, g.positions()) for g in groups] == [
        ("beta_vae", "beta", [1.0, 4.0]),
        ("factor_vae", "gamma", [10.0, 40.0]),
    ]
    picks = selection.select(two_objectives, "disent/mig")
    tables = {g.name: t.to_pylist() for g, t in selection.tradeoff_tables(two_objectives, picks)}
    assert [r["beta"] for r in tables["beta_vae"]] == [1.0, 4.0]
    assert [r["gamma"] for r in tables["factor_vae"]] == [10.0, 40.0]
    assert "gamma" not in tables["beta_vae"][0] and "beta" not in tables["factor_vae"][0]


def test_eta_squared_is_taken_within_each_objective(two_objectives):
    shares = {r["objective"]: r for r in selection.variance_shares(two_objectives, ["disent/mig"]).to_pylist()}
    # beta_vae: 0.1 0.3 | 0.5 0.7, mean 0.4: SS_total = 0.09 + 0.01 + 0.01 + 0.09 = 0.2,
    # SS_between = 2 * 0.2^2 + 2 * 0.2^2 = 0.16: eta^2 = 0.8, the seed 0.2.
    assert shares["beta_vae"]["configuration_share"] == pytest.approx(0.8)
    assert shares["beta_vae"]["seed_share"] == pytest.approx(0.2)
    # factor_vae: 0.2 0.6 | 0.3 0.5, both means 0.4: SS_between = 0, everything is the seed's.
    assert shares["factor_vae"]["configuration_share"] == pytest.approx(0.0)
    assert shares["factor_vae"]["seed_share"] == pytest.approx(1.0)
    assert {r["configurations"] for r in shares.values()} == {2}
    # Pooled over all four configurations it would be 0.16 / 0.3: the objectives are not pooled.
    _, labels = selection.configurations(two_objectives)
    pooled = selection.eta_squared(selection.column(two_objectives, "disent/mig"), labels)
    assert pooled == pytest.approx(0.16 / 0.3)


def test_pareto_fronts_per_objective_and_over_all(two_objectives):
    picks = selection.select(two_objectives, "disent/mig")
    # Medians (recon, mig): beta 1 (101, 0.2), beta 4 (111, 0.6), gamma 10 (151, 0.4), gamma 40 (121, 0.4).
    # Within each objective: both betas (one reconstructs, one disentangles); gamma 40 beats gamma 10.
    front = {p.configuration.label() for p in picks.of(TRADEOFF, PARETO)}
    assert front == {"beta_vae beta=1", "beta_vae beta=4", "factor_vae gamma=40"}
    # Over all: beta 4 beats both gammas in both.
    overall = {p.configuration.label() for p in picks.of(TRADEOFF, PARETO_OVERALL)}
    assert overall == {"beta_vae beta=1", "beta_vae beta=4"}
    tables = {g.name: t.to_pylist() for g, t in selection.tradeoff_tables(two_objectives, picks)}
    assert [(r["pareto"], r["pareto_overall"]) for r in tables["factor_vae"]] == [(False, False), (True, False)]
    assert [(r["pareto"], r["pareto_overall"]) for r in tables["beta_vae"]] == [(True, True), (True, True)]
    assert [r["recon_median"] for r in tables["factor_vae"]] == [151.0, 121.0]
    # The median seed of two is the lower seed of the middle pair: seed 0.
    assert {p.seed for p in picks.of(TRADEOFF, MEDIAN_SEED)} == {0}
    statistics = selection.seed_table(picks).to_pylist()
    assert [(r["objective"], r["configuration"]) for r in statistics] == [
        ("beta_vae", "beta_vae beta=1"), ("beta_vae", "beta_vae beta=4"),
        ("factor_vae", "factor_vae gamma=10"), ("factor_vae", "factor_vae gamma=40"),
    ]
    assert [r["spread"] for r in statistics] == pytest.approx([0.2, 0.2, 0.4, 0.2])


def test_the_swept_weight_is_the_one_that_varies():
    fixed_gamma = [Configuration.of("annealed_vae", {"gamma": 1000.0, "c_max": c}) for c in (25.0, 5.0)]
    [group] = selection.tradeoffs(fixed_gamma)
    assert group.swept == "c_max" and group.positions() == [5.0, 25.0]
    both = [Configuration.of("annealed_vae", {"gamma": g, "c_max": c}) for g, c in ((100, 25), (10, 5), (100, 5))]
    [group] = selection.tradeoffs(both)
    # Two weights vary: no axis, the configurations in their label's order at places 0, 1, 2.
    assert group.swept is None and group.positions() == [0.0, 1.0, 2.0]
    assert [c.label() for c in group.configurations] == [
        "annealed_vae gamma=10 c_max=5", "annealed_vae gamma=100 c_max=5", "annealed_vae gamma=100 c_max=25"
    ]
    [single] = selection.tradeoffs(fixed_gamma[:1])
    assert single.swept is None and single.axis_label() == "configuration"


def test_a_sweep_whose_models_never_left_the_prior_is_noted_and_one_active_latent_is_enough():
    collapsed = pa.table({"active_latents": [0.0, 0.0, 0.0], "kl": [0.006, 0.14, 0.05]})
    note = selection.collapse_note(collapsed)
    assert note is not None
    assert "none of the 3 finished models has an active latent" in note
    assert "largest total KL is 0.14 nats" in note and "training.steps" in note
    assert selection.collapse_note(pa.table({"active_latents": [0.0, 1.0, 0.0], "kl": [0.01, 0.9, 0.02]})) is None
    assert selection.collapse_note(pa.table({"kl": [0.01]})) is None  # a sweep that did not report it: no claim
