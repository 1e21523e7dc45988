import pytest
import torch

from trainables.objectives import OBJECTIVES, STUDY_GRID, WEIGHTS, make_objective
from trainables.objectives.dip_vae import DIPVAEI, DIPVAEII
from trainables.objectives.factor_vae import FactorVAE


def test_the_six_kinds_and_their_weights_are_the_studys():
    assert WEIGHTS == {
        "beta_vae": ("beta",),
        "annealed_vae": ("gamma", "c_max"),
        "factor_vae": ("gamma",),
        "dip_vae_i": ("lambda_od",),
        "dip_vae_ii": ("lambda_od",),
        "beta_tcvae": ("beta",),
    }
    for kind, grid in STUDY_GRID.items():
        assert tuple(grid) == WEIGHTS[kind]
    # sweep.py: 6 objectives x 6 values = 36 configurations
    sizes = {kind: max(len(values) for values in grid.values()) for kind, grid in STUDY_GRID.items()}
    assert sizes == dict.fromkeys(OBJECTIVES, 6)
    annealed = STUDY_GRID["annealed_vae"]
    assert annealed["gamma"] == (1000.0,)
    assert STUDY_GRID["beta_vae"]["beta"][-1] == 16.0 and STUDY_GRID["beta_tcvae"]["beta"][-1] == 10.0


def test_dip_variants_fix_the_diagonal_weight_as_the_study_does():
    assert DIPVAEI(5.0).lambda_d == 50.0 and DIPVAEII(5.0).lambda_d == 5.0


def test_make_objective_builds_each_kind_from_its_own_weights():
    generators = [torch.Generator().manual_seed(s) for s in (0, 1)]
    for kind, grid in STUDY_GRID.items():
        weights = {name: values[0] for name, values in grid.items()}
        objective = make_objective(kind, weights, seeds=(0, 1), latent_dim=3, generators=generators)
        assert type(objective) is OBJECTIVES[kind] and objective.kind == kind
    factor = make_objective("factor_vae", {"gamma": 10.0}, seeds=(0, 1), latent_dim=3, generators=generators)
    assert isinstance(factor, FactorVAE) and factor.discriminator.size == 2 and factor.discriminator.latent_dim == 3


@pytest.mark.parametrize(
    ("kind", "weights", "message"),
    [
        ("beta-vae", {"beta": 1.0}, r"objective kind 'beta-vae': unknown; known: \['annealed_vae'"),
        ("beta_vae", {"beta": 1.0, "gamma": 2.0}, r"objective beta_vae takes \['beta'\]: gamma does not belong to it"),
        ("dip_vae_i", {}, r"objective dip_vae_i takes \['lambda_od'\]: lambda_od is missing"),
    ],
)
def test_a_kind_or_weight_that_does_not_fit_is_named(kind, weights, message):
    with pytest.raises(ValueError, match=message):
        make_objective(kind, weights, seeds=(0,), latent_dim=2, generators=[torch.Generator()])


def test_objectives_without_state_refuse_a_checkpoint_that_has_some():
    generators = [torch.Generator(), torch.Generator()]
    objective = make_objective("beta_vae", {"beta": 1.0}, seeds=(0, 1), latent_dim=2, generators=generators)
    objective.load_model_states([{}, {}])
    message = r"beta_vae keeps no state of its own; the checkpoint holds \['discriminator'\]"
    with pytest.raises(ValueError, match=message):
        objective.load_model_states([{}, {"discriminator": {}}])
