"""`--set key.path=value`: read by the hardened reader, refused by key, and never echoing the value."""

import pytest

from sweeper.config.overrides import apply_overrides
from sweeper.errors import ConfigError


def test_an_override_reaches_a_nested_key_and_its_value_is_read_as_yaml():
    raw = apply_overrides({"training": {"lr": 0.1}}, ["training.steps=30", "search.beta=[2, 3]", "name=x"])
    assert raw == {"training": {"lr": 0.1, "steps": 30}, "search": {"beta": [2, 3]}, "name": "x"}


@pytest.mark.parametrize("text", ["training.steps", "=3", "a..b=1"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides({}, [text])


def test_override_through_a_value_is_refused():
    with pytest.raises(ConfigError, match="name holds 'x', not a section"):
        apply_overrides({"name": "x"}, ["name.inner=1"])


@pytest.mark.timeout(10, method="thread")
def test_an_alias_bomb_in_an_override_is_refused():
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]" for level in range(1, 9)]
    with pytest.raises(ConfigError, match=r"--set description\.l\d: more than \d+ values once its aliases"):
        apply_overrides({}, [f"description={{{', '.join(levels)}}}"])


def test_a_key_given_twice_in_an_override_is_refused():
    with pytest.raises(ConfigError, match=r"--set search\.seeds: duplicate key"):
        apply_overrides({}, ["search={beta: [1], seeds: 2, seeds: 3}"])


def test_a_merge_key_may_still_be_overridden_key_by_key():
    raw = apply_overrides({}, ["search={<<: {beta: [1], seeds: 2}, seeds: 3}"])
    assert raw["search"] == {"beta": [1], "seeds": 3}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (f"training.steps={'1' * 5000}", r"--set training\.steps = 1{12}\.\.\. \(5000 characters\): too long for a"),
        (f"search.beta=[1, {'2' * 5000}]", r"--set search\.beta\[1\] = 2{12}\.\.\. \(5000 characters\): too long"),
        (f"search.capacity=[0.{'5' * 5000}]", r"--set search\.capacity\[0\] = 0\.5{10}\.\.\. \(5002 characters\)"),
        ("description=" + "[" * 5000, r"--set description: nested too deeply"),
    ],
)
def test_unreadable_override_values_name_the_key(override, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        apply_overrides({}, [override])
    assert info.value.exit_code == 2


@pytest.mark.parametrize("override", ["tracking.uri=[hunter2", "tracking.uri={a: hunter2", "tracking.uri=*hunter2"])
def test_a_yaml_error_in_an_override_names_the_key_but_not_the_value(override):
    with pytest.raises(ConfigError, match=r"--set tracking\.uri: the value is not valid YAML") as info:
        apply_overrides({}, [override])
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("text", ["=hunter2", "a..b=hunter2", "tracking uri=hunter2"])
def test_a_malformed_override_does_not_echo_its_value(text):
    with pytest.raises(ConfigError, match="expected key.path=value") as info:
        apply_overrides({}, [text])
    assert "hunter2" not in str(info.value)


def test_an_override_through_a_uri_masks_the_uri():
    with pytest.raises(ConfigError, match=r"tracking\.uri holds 'http://\*\*\*@h', not a section") as info:
        apply_overrides({"tracking": {"uri": "http://admin:hunter2@h"}}, ["tracking.uri.x=1"])
    assert "hunter2" not in str(info.value)
