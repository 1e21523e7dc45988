"""The trial description: one reading of Tune's config dict, one model label."""

from __future__ import annotations

from ray.tune.search.repeater import TRIAL_INDEX as RAY_TRIAL_INDEX

from trainables.settings import TrialSettings
from trainables.trial import PACK_SEEDS, TRIAL_INDEX, ModelSpec, TrialSpec, safe_name


def _config(**extra):
    settings = TrialSettings().model_dump(mode="json")
    settings["training"]["seed_offset"] = 10
    return {"beta": 4.0, "capacity": 25.0, "settings": settings, **extra}


def test_trial_index_is_rays_own_key():
    assert TRIAL_INDEX == RAY_TRIAL_INDEX


def test_single_trial_seed_is_offset_plus_repeat_index():
    spec = TrialSpec.from_config(_config(**{TRIAL_INDEX: 2}))
    assert (spec.beta, spec.capacity, spec.seeds) == (4.0, 25.0, (12,))
    assert spec.label() == "beta=4 C=25 seed=12"


def test_settings_model_gives_the_same_seed_as_its_dict():
    config = _config(**{TRIAL_INDEX: 1})
    config["settings"] = TrialSettings.model_validate(config["settings"])
    assert TrialSpec.from_config(config).seeds == (11,)


def test_pack_lists_its_seeds():
    spec = TrialSpec.from_config(_config(**{PACK_SEEDS: [10, 11, 12]}))
    assert spec.seeds == (10, 11, 12)
    assert [m.label() for m in spec.models()] == [f"beta=4 C=25 seed={s}" for s in (10, 11, 12)]
    assert spec.label() == "beta=4 C=25 seeds=10-12"


def test_label_rounds_sampled_values_to_four_digits():
    assert ModelSpec(3.14159265, 0.0, 0).label() == "beta=3.142 C=0 seed=0"


def test_file_stem_and_safe_name_keep_one_path_component():
    assert ModelSpec(4.0, 2.5, 1).file_stem() == "beta=4_C=2.5_seed=1"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert "/" not in safe_name("a/b\\c") and safe_name("..") == "_"


def test_model_keys_round_trip_and_leave_pack_keys_alone():
    from trainables.trial import model_key, split_model_key

    assert split_model_key(model_key(7, "disent/mig")) == (7, "disent/mig")
    assert split_model_key(model_key(0, "kl/3")) == (0, "kl/3")
    assert split_model_key("disent/mig") is None and split_model_key("model/x/loss") is None
