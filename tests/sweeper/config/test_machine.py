"""What a config points at on this machine: checked where a command starts work, never by loading."""

import os
from pathlib import Path

import numpy as np
import pytest

from sweeper.config import check_machine, effective_tracking_uri, load_config
from sweeper.errors import ConfigError
from trainables.data import byo

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SMOKE = CONFIGS / "smoke.yaml"


@pytest.fixture(autouse=True)
def no_uri_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def checked(*overrides: str):
    return check_machine(load_config(SMOKE, list(overrides)), "cfg.yaml")


def test_tracking_uri_prefers_config_then_environment(monkeypatch):
    assert effective_tracking_uri(load_config(SMOKE)) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert effective_tracking_uri(load_config(SMOKE)) == "http://tracker:5000"
    assert effective_tracking_uri(load_config(SMOKE, ["tracking.uri=sqlite:///x.db"])) == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("variable", "uri", "hint"),
    [
        ("MLFLOW_TRACKING_URI", "https://admin:hunter2@tracker", "MLFLOW_TRACKING_PASSWORD"),
        ("RAY_ADDRESS", "ray://admin:hunter2@head:10001", "environment"),
        ("RAY_ADDRESS", "admin:hunter2@head:6379", "environment"),
    ],
)
def test_credentials_in_an_environment_uri_are_refused(monkeypatch, variable, uri, hint):
    monkeypatch.setenv(variable, uri)
    config = load_config(SMOKE)  # loading reads no environment
    expected = rf"cfg\.yaml: invalid sweep config\n  \${variable} = '(\w+://)?\*\*\*@[^']+': a user name or password .*{hint}"
    with pytest.raises(ConfigError, match=expected) as info:
        check_machine(config, "cfg.yaml")
    assert "hunter2" not in str(info.value)


def test_an_environment_uri_is_not_checked_when_the_key_is_set(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://admin:hunter2@tracker")
    assert checked("tracking.uri=sqlite:///x.db").tracking.uri == "sqlite:///x.db"


# -- the dataset file ----------------------------------------------------------------------------
def small_npz(path: Path) -> Path:
    """A full 2 x 3 factor grid in the `npz` format: headers are all the check reads."""
    classes = np.stack(np.unravel_index(np.arange(6), (2, 3)), axis=1)
    return byo.write(path, np.zeros((6, 64, 64), np.uint8), classes, ["a", "b"])


def test_a_relative_data_path_is_made_absolute(tmp_path, monkeypatch):
    small_npz(tmp_path / "own.npz")
    monkeypatch.chdir(tmp_path)
    config = load_config(SMOKE, ["data.name=npz", "data.path=own.npz"])
    assert config.data.path == "own.npz"
    assert checked("data.name=npz", "data.path=own.npz").data.path == str(tmp_path / "own.npz")


def test_a_missing_data_file_is_refused_naming_the_key_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = rf"cfg\.yaml: invalid sweep config\n  data\.path = 'gone\.npz': no such file \(relative to {tmp_path}\)"
    with pytest.raises(ConfigError, match=expected) as info:
        checked("data.name=npz", "data.path=gone.npz")
    assert info.value.exit_code == 2


def test_ground_truth_is_checked_against_the_datasets_factors():
    with pytest.raises(ConfigError, match=r"data\.ground_truth: procedural dSprites: ground_truth names 'hue', not"):
        checked("data.ground_truth=[scale, hue]")


def test_every_problem_is_named_in_one_message(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError) as info:
        checked(f"storage={tmp_path}/afile", "data.name=npz", f"data.path={tmp_path}/gone.npz")
    assert str(info.value).splitlines() == [
        "cfg.yaml: invalid sweep config",
        f"  storage = '{tmp_path}/afile': is a file, not a folder",
        f"  data.path = '{tmp_path}/gone.npz': no such file",
    ]


# -- storage: checked as a folder before anything is created ---------------------------------
@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder this user cannot create anything in: a locked one, or for root, a read-only /proc one."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    folder = next((f for f in (locked, Path("/proc/self")) if f.is_dir() and not os.access(f, os.W_OK)), None)
    if folder is None:
        pytest.skip("every folder is writable to this user")
    yield folder
    locked.chmod(0o755)


def test_storage_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=rf"storage = '{tmp_path}/afile': is a file, not a folder"):
        checked(f"storage={tmp_path}/afile")
    expected = rf"storage = '{tmp_path}/afile/sub': cannot be created: {tmp_path}/afile is a file, not a folder"
    with pytest.raises(ConfigError, match=expected):
        checked(f"storage={tmp_path}/afile/sub")


def test_storage_in_a_folder_that_is_not_writable_is_refused(unwritable_folder):
    storage = unwritable_folder / "sweeps" / "here"
    expected = rf"storage = '{storage}': cannot be created: {unwritable_folder} is not writable"
    with pytest.raises(ConfigError, match=expected):
        checked(f"storage={storage}")


def test_storage_where_no_folder_can_be_made_is_refused_even_for_root():
    # /proc looks writable to root (its permission bits allow it) but takes no new folder.
    with pytest.raises(ConfigError, match=r"storage = '/proc/x': cannot be created: /proc is not writable \("):
        checked("storage=/proc/x")


def test_an_existing_storage_folder_must_take_a_sweep_folder(unwritable_folder):
    with pytest.raises(ConfigError, match=rf"storage = '{unwritable_folder}': is not writable \("):
        checked(f"storage={unwritable_folder}")


def test_storage_that_does_not_exist_yet_is_accepted_and_not_created(tmp_path):
    storage = tmp_path / "new" / "sweeps"
    assert checked(f"storage={storage}").storage == str(storage)
    assert list(tmp_path.iterdir()) == []
