"""The hardened YAML reader: what a careless or hostile config file holds, refused by key and line."""

from pathlib import Path

import pytest

from sweeper.config.reader import MAX_YAML_NODES, read_yaml
from sweeper.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SMOKE_TEXT = (CONFIGS / "smoke.yaml").read_text()
# A bomb that got through would run for minutes in C loops, which a timeout signal waits for: the thread
# method ends the test run instead.
within_seconds = pytest.mark.timeout(10, method="thread")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def alias_bomb(levels: int) -> str:
    """A "billion laughs": each level lists the one before ten times, so it expands to 10**levels values."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return "\n".join(lines)


def test_the_shipped_smoke_config_is_read_as_a_mapping_of_sections():
    raw = read_yaml(CONFIGS / "smoke.yaml")
    assert raw["name"] == "smoke" and raw["training"]["steps"] == 150


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        read_yaml(tmp_path / "absent.yaml")


def test_invalid_yaml_reports_line_and_column(tmp_path):
    path = write(tmp_path, "name: x\nsearch:\n  beta: [1, 2\n  seeds: 2\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+"):
        read_yaml(path)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_yaml(write(tmp_path, "- 1\n- 2\n"))


@within_seconds
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    # 10**9 values once expanded: constructing, validating and echoing them took minutes and gigabytes.
    text = f"name: bomb\nx: {{{alias_bomb(9).replace(chr(10), ', ')}}}\nsearch:\n  beta: *l8\n"
    with pytest.raises(ConfigError, match=rf"more than {MAX_YAML_NODES} values once its aliases are expanded"):
        read_yaml(write(tmp_path, text))


def test_aliases_within_the_limit_are_still_read(tmp_path):
    raw = read_yaml(write(tmp_path, "name: x\nsearch:\n  beta: &values [1.0, 2.0]\n  capacity: *values\n"))
    assert raw["search"]["beta"] == raw["search"]["capacity"] == [1.0, 2.0]


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2, column 9: search\.more: an alias refers to a value that contains"):
        read_yaml(write(tmp_path, "name: x\nsearch: &s\n  beta: [1]\n  more: *s\n"))


def test_a_section_given_twice_is_refused_naming_the_key_and_lines(tmp_path):
    # PyYAML keeps the second `training:`, so lr fell back to its default without a word.
    text = "name: x\ntraining:\n  lr: 0.001\nsearch:\n  beta: [1]\ntraining:\n  steps: 10\n"
    expected = r"invalid YAML at line 6, column 1: training: duplicate key \(first given at line 2\)"
    with pytest.raises(ConfigError, match=expected):
        read_yaml(write(tmp_path, text))


def test_a_key_given_twice_in_a_section_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"line 4, column 3: search\.beta: duplicate key \(first given at line 3\)"):
        read_yaml(write(tmp_path, "name: x\nsearch:\n  beta: [1]\n  beta: [2]\n"))


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n"])
def test_an_empty_file_is_called_empty(tmp_path, text):
    with pytest.raises(ConfigError, match=r"sweep\.yaml: the file is empty"):
        read_yaml(write(tmp_path, text))


def test_a_number_too_long_to_read_names_the_key_and_line(tmp_path):
    # Python refuses to read an int of more than 4300 digits: this was a ValueError traceback.
    huge = "1" * 5000
    path = write(tmp_path, SMOKE_TEXT.replace("  steps: 150", f"  steps: {huge}", 1))
    expected = r"line 10, column 10: training\.steps = 1{12}\.\.\. \(5000 characters\): too long for a number"
    with pytest.raises(ConfigError, match=expected) as info:
        read_yaml(path)
    assert info.value.exit_code == 2 and len(str(info.value)) < 300
