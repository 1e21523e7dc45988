"""The search's objectives: each of the study's objectives with the values of its own weights."""

from __future__ import annotations

import pytest

from sweeper.config import validate_config
from sweeper.errors import ConfigError


def search(**search) -> dict:
    return {"name": "t", "search": search}


def test_each_objective_takes_its_own_weights_in_its_order():
    config = validate_config(search(objectives={"annealed_vae": {"c_max": [5, 25], "gamma": [1000]}}), "c.yaml")
    assert list(config.search.objectives["annealed_vae"]) == ["gamma", "c_max"]
    assert config.search.configuration_count() == 2


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ({"factor_vae": {"beta": [1.0]}}, r"search.objectives.factor_vae.beta: not a weight of factor_vae \(its weights: gamma\)"),
        ({"beta-vae": {"beta": [1.0]}}, r"beta-vae: unknown objective; known: beta_vae, annealed_vae, factor_vae"),
        ({"annealed_vae": {"gamma": [1000.0]}}, r"annealed_vae: give the values of c_max"),
        ({"dip_vae_i": {"lambda_od": [0.0]}}, r"dip_vae_i.lambda_od = 0: must be > 0"),
        ({"annealed_vae": {"gamma": [1.0], "c_max": [-1.0]}}, r"annealed_vae.c_max = -1: must be >= 0"),
        ({"beta_vae": {"beta": []}}, r"beta_vae.beta: needs at least one value"),
        ({}, r"needs at least one objective"),
        ({"beta_vae": {"beta": {"low": 1.0, "high": 4.0}}}, r"objectives.beta_vae.beta: a grid needs a list of values"),
    ],
)
def test_a_weight_that_does_not_belong_to_its_objective_or_is_out_of_bounds_is_named(objectives, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(search(objectives=objectives), "c.yaml")


def test_optuna_needs_something_to_search_and_may_choose_among_objectives():
    one = {"beta_vae": {"beta": [4.0]}}
    with pytest.raises(ConfigError, match="optuna needs something to search"):
        validate_config(search(kind="optuna", num_samples=3, objectives=one), "c.yaml")
    two = {**one, "factor_vae": {"gamma": [10.0]}}
    config = validate_config(search(kind="optuna", num_samples=3, objectives=two), "c.yaml")
    assert config.search.configuration_count() == 2


def test_configs_of_earlier_releases_read_beta_and_capacity_as_the_beta_vae_and_the_annealed_vae():
    # recon + beta * |KL - C(t)|: the beta-VAE where C_max = 0, the AnnealedVAE with gamma = beta elsewhere
    config = validate_config(search(beta=[1.0, 4.0], capacity=[0.0, 25.0]), "c.yaml")
    assert config.search.model_dump()["objectives"] == {
        "beta_vae": {"beta": [1.0, 4.0]},
        "annealed_vae": {"gamma": [1.0, 4.0], "c_max": [25.0]},
    }
    ranged = validate_config(
        search(kind="optuna", num_samples=2, beta={"low": 1.0, "high": 9.0}, capacity={"low": 0.0, "high": 5.0}), "c"
    )
    assert set(ranged.search.objectives) == {"annealed_vae"}
    assert validate_config(search(beta=[2.0]), "c.yaml").search.model_dump()["objectives"] == {"beta_vae": {"beta": [2.0]}}
