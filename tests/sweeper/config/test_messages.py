"""The wording of a config's problems: one header naming the file, one line per problem."""

import pytest

from sweeper.config import validate_config
from sweeper.errors import ConfigError


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config({"name": "x", **raw}, "cfg.yaml")
    header, *lines = str(info.value).splitlines()
    assert header == "cfg.yaml: invalid sweep config"
    return lines


def test_a_range_reports_only_the_range_problems_and_a_list_only_the_list_problems():
    # pydantic tries both branches of `list | Range`; the other branch's complaints are noise.
    search = {"kind": "optuna", "num_samples": 2}
    assert problems({"search": {**search, "objectives": {"beta_vae": {"beta": {"low": 2, "high": 1}}}}}) == [
        "  search.objectives.beta_vae.beta.low = 2.0: must be below high = 1.0"
    ]
    assert problems({"search": {"objectives": {"beta_vae": {"beta": [1.0, "many"]}}}}) == [
        "  search.objectives.beta_vae.beta.1 = 'many': Input should be a valid number, unable to parse string as a "
        "number"
    ]


def test_a_config_of_an_earlier_release_is_worded_as_cleanly():
    # `beta`/`capacity` are rewritten as objectives before validation: no key of the file is where the
    # error points, and the message still names the problem once.
    assert problems({"search": {"kind": "optuna", "num_samples": 2, "beta": {"low": 2, "high": 1}}}) == [
        "  search.objectives.beta_vae.beta.low = 2.0: must be below high = 1.0"
    ]


def test_a_long_value_is_cut_short_with_its_length():
    (line,) = problems({"search": {"objectives": {"beta_vae": {"beta": [1.0]}}}, "description": ["x" * 500]})
    assert line == f"  description = ['{'x' * 58}... (504 characters): Input should be a valid string"


def test_a_check_across_a_section_names_the_key_inside_it():
    assert problems({"search": {"objectives": {"beta_vae": {"beta": [1.0]}}}, "data": {"name": "npz"}}) == [
        "  data.path: required when name is 'npz'"
    ]


def test_unknown_and_missing_keys_are_named_as_such():
    assert problems({"serach": {}}) == [
        "  search: required key is missing",
        "  serach: unknown key (check its spelling and section)",
    ]


def test_credentials_are_named_once_and_masked():
    search = {"objectives": {"beta_vae": {"beta": [1.0]}}}
    lines = problems({"search": search, "tracking": {"uri": "http://admin:hunter2@tracker"}})
    assert len(lines) == 1 and lines[0].startswith("  tracking.uri = 'http://***@tracker': a user name or password")
