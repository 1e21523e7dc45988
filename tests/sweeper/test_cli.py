"""The CLI's contract for bad input: a clear message, exit 2 or 3, and nothing created."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeper.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


def nothing_created(folder: Path) -> bool:
    return not (folder / "sweeps").exists() and not (folder / "mlflow.db").exists()


def test_validate_prints_the_trial_count():
    result = runner.invoke(app, ["validate", str(CONFIGS / "smoke.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid; 6 trials" in result.output


def test_dry_run_prints_the_full_beta_grid_plan(in_tmp):
    result = runner.invoke(app, ["launch", str(CONFIGS / "beta_grid.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "6 trials (30 models)" in result.output
    for beta in (1, 2, 4, 6, 8, 16):
        assert f"beta={beta}  C_max=0  seeds=[0, 1, 2, 3, 4]" in result.output
    assert nothing_created(in_tmp)


def test_dry_run_of_optuna_describes_the_search(in_tmp):
    result = runner.invoke(app, ["launch", str(CONFIGS / "optuna_beta_capacity.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "20 trials (60 models)" in result.output and "optuna (tpe): 20 configurations" in result.output


@pytest.mark.parametrize("command", ["validate", "launch"])
def test_config_error_exits_2_and_names_key_and_value(command, in_tmp):
    result = runner.invoke(app, [command, str(CONFIGS / "smoke.yaml"), "--set", "search.beta=[0]"])
    assert result.exit_code == 2
    assert "search.beta = 0.0: must be > 0" in result.output
    assert nothing_created(in_tmp)


def test_missing_config_file_exits_2(in_tmp):
    result = runner.invoke(app, ["launch", "absent.yaml"])
    assert result.exit_code == 2
    assert "absent.yaml: no such config file" in result.output


def test_unreachable_ray_address_exits_3_before_anything_is_created(in_tmp):
    result = runner.invoke(app, ["launch", str(CONFIGS / "smoke.yaml"), "--address", "127.0.0.1:9"])
    assert result.exit_code == 3
    assert "Ray address '127.0.0.1:9' is unreachable" in result.output
    assert nothing_created(in_tmp)


def test_tracking_uri_that_cannot_be_opened_exits_3(in_tmp):
    (in_tmp / "a_file").write_text("")
    uri = f"sqlite:///{in_tmp / 'a_file' / 'mlflow.db'}"
    result = runner.invoke(app, ["launch", str(CONFIGS / "smoke.yaml"), "--set", f"tracking.uri={uri}"])
    assert result.exit_code == 3
    assert "cannot be opened" in result.output
    assert nothing_created(in_tmp)


def test_unreachable_tracking_server_exits_3(in_tmp):
    args = ["launch", str(CONFIGS / "smoke.yaml"), "--set", "tracking.uri=http://127.0.0.1:9"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3
    assert "tracking URI 'http://127.0.0.1:9' cannot be opened" in result.output
    assert nothing_created(in_tmp)


def test_status_of_an_unknown_sweep_exits_3(in_tmp):
    result = runner.invoke(app, ["status", "nope"])
    assert result.exit_code == 3
    assert "no sweep 'nope'" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["select", "some-sweep", "--tracking-uri", "http://alice:hunter2@mlflow.example:5000"],
        ["report", "some-sweep", "--tracking-uri", "https://alice:hunter2@mlflow.example"],
        ["study", "some-sweep", "--out", "out", "--tracking-uri", "https://alice:hunter2@mlflow.example"],
        ["export", "some-sweep", "--to", "out", "--tracking-uri", "http://alice:hunter2@mlflow.example"],
        ["launch", str(CONFIGS / "smoke.yaml"), "--address", "ray://alice:hunter2@head.example:10001"],
        ["resume", "some-sweep", "--address", "ray://alice:hunter2@head.example:10001"],
    ],
)
def test_credentials_in_a_uri_option_exit_2_and_are_not_echoed(args, in_tmp):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    option = "--tracking-uri" if "--tracking-uri" in args else "--address"
    assert f"{option} = " in result.output and "user name or password in the URI" in result.output
    assert "hunter2" not in result.output and "alice" not in result.output
    assert nothing_created(in_tmp) and not (in_tmp / "out").exists()
