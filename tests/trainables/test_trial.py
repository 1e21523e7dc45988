"""The trial description: one reading of Tune's config dict, one model label."""

from __future__ import annotations

from ray.tune.search.repeater import TRIAL_INDEX as RAY_TRIAL_INDEX

from trainables.settings import TrialSettings
from trainables.trial import (
    CONFIGURATION_KEY,
    PACK_SEEDS,
    TRIAL_INDEX,
    Configuration,
    ModelSpec,
    TrialSpec,
    safe_name,
)


def _config(**extra):
    settings = TrialSettings().model_dump(mode="json")
    settings["training"]["seed_offset"] = 10
    return {"beta": 4.0, "capacity": 25.0, "settings": settings, **extra}


def test_trial_index_is_rays_own_key():
    assert TRIAL_INDEX == RAY_TRIAL_INDEX


def test_single_trial_seed_is_offset_plus_repeat_index():
    spec = TrialSpec.from_config(_config(**{TRIAL_INDEX: 2}))
    assert (spec.configuration, spec.seeds) == (Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 25.0}), (12,))
    assert spec.label() == "annealed_vae gamma=4 c_max=25 seed=12"


def test_settings_model_gives_the_same_seed_as_its_dict():
    config = _config(**{TRIAL_INDEX: 1})
    config["settings"] = TrialSettings.model_validate(config["settings"])
    assert TrialSpec.from_config(config).seeds == (11,)


def test_pack_lists_its_seeds():
    spec = TrialSpec.from_config(_config(**{PACK_SEEDS: [10, 11, 12]}))
    assert spec.seeds == (10, 11, 12)
    assert [m.label() for m in spec.models()] == [f"annealed_vae gamma=4 c_max=25 seed={s}" for s in (10, 11, 12)]
    assert spec.label() == "annealed_vae gamma=4 c_max=25 seeds=10-12"


def test_a_trial_names_its_objective_and_weights():
    config = _config(**{CONFIGURATION_KEY: {"objective": "dip_vae_ii", "weights": {"lambda_od": 5.0}}, PACK_SEEDS: [0, 1]})
    del config["beta"], config["capacity"]
    spec = TrialSpec.from_config(config)
    assert spec.configuration == Configuration.of("dip_vae_ii", {"lambda_od": 5.0})
    assert spec.configuration.to_config() == config[CONFIGURATION_KEY]
    assert spec.configuration.weight("lambda_od") == 5.0 and spec.configuration.weight("beta") is None
    assert spec.label() == "dip_vae_ii lambda_od=5 seeds=0-1"


def test_earlier_trials_of_beta_and_capacity_are_the_beta_vae_or_the_annealed_vae():
    # recon + beta * |KL - C|: with C = 0 the beta-VAE's beta * KL (KL >= 0), else AnnealedVAE's gamma * |KL - C|
    assert Configuration.from_beta_and_capacity(4.0, 0.0) == Configuration.of("beta_vae", {"beta": 4.0})
    assert Configuration.from_beta_and_capacity(4.0, 25.0) == Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 25.0})


def test_label_rounds_sampled_values_to_four_digits():
    assert ModelSpec(Configuration.of("beta_vae", {"beta": 3.14159265}), 0).label() == "beta_vae beta=3.142 seed=0"


def test_file_stem_and_safe_name_keep_one_path_component():
    configuration = Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 2.5})
    assert ModelSpec(configuration, 1).file_stem() == "annealed_vae_gamma=4_c_max=2.5_seed=1"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert "/" not in safe_name("a/b\\c") and safe_name("..") == "_"


def test_model_keys_round_trip_and_leave_pack_keys_alone():
    from trainables.trial import model_key, split_model_key

    assert split_model_key(model_key(7, "disent/mig")) == (7, "disent/mig")
    assert split_model_key(model_key(0, "kl/3")) == (0, "kl/3")
    assert split_model_key("disent/mig") is None and split_model_key("model/x/loss") is None
