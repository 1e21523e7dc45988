"""The quick start's check of the picture it promises, on tables worked out by hand."""

import pyarrow as pa

from bench.quickstart import by_beta, tradeoff_problems


def table(rows: list[tuple[float, int, float, float, float]], status: str = "FINISHED") -> pa.Table:
    beta, seed, kl, recon, active = zip(*rows)
    return pa.table(
        {
            "status": [status] * len(rows),
            "beta": list(beta),
            "seed": list(seed),
            "kl": list(kl),
            "recon": list(recon),
            "active_latents": list(active),
        }
    )


CLEAN = [
    (1.0, 0, 20.1, 40.0, 10.0), (1.0, 1, 19.0, 42.0, 9.0),
    (4.0, 0, 10.6, 60.0, 6.0), (4.0, 1, 11.0, 58.0, 5.0),
    (16.0, 0, 5.8, 90.0, 4.0), (16.0, 1, 6.1, 85.0, 4.0),
]


def test_a_clean_run_shows_the_tradeoff():
    models = by_beta(table(CLEAN))
    assert sorted(models) == [1.0, 4.0, 16.0]
    assert list(models[4.0]["kl"]) == [10.6, 11.0]
    assert tradeoff_problems(models) == []


def test_overlapping_seeds_rising_latents_and_a_collapsed_model_are_each_named():
    rows = list(CLEAN)
    rows[2] = (4.0, 0, 19.5, 41.0, 10.0)  # beta 4 seed 0 as good as beta 1: KL and recon overlap
    rows[1] = (1.0, 1, 0.0, 42.0, 0.0)  # a beta 1 seed that never left the prior
    problems = tradeoff_problems(by_beta(table(rows)))
    assert "KL of beta 4 (max 19.5) not below beta 1 (min 0)" in problems
    assert "reconstruction of beta 4 (min 41) not above beta 1 (max 42)" in problems
    assert "median active latents rise from beta 1 to beta 4" in problems  # medians 5 then 7.5
    assert "a model of beta 1 has no active latent: it never left the prior" in problems


def test_active_latents_must_fall_somewhere_along_beta():
    flat = [(beta, seed, kl, recon, 10.0) for beta, seed, kl, recon, _ in CLEAN]
    assert tradeoff_problems(by_beta(table(flat))) == ["median active latents no fewer at beta 16 than at beta 1"]


def test_unfinished_models_are_left_out():
    assert by_beta(table(CLEAN, status="FAILED")) == {}
    assert tradeoff_problems({}) == ["fewer than two betas finished"]
