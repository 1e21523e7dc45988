"""The CLI's contract for bad input: a clear message, exit 2 or 3, and nothing created."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.record import RESOLVED_CONFIG

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
        assert f"beta_vae beta={beta}  seeds=[0, 1, 2, 3, 4] (one packed trial)" in result.output
    assert nothing_created(in_tmp)


def test_dry_run_of_many_seeds_prints_a_short_plan(in_tmp):
    betas = ", ".join(str(b) for b in range(1, 51))
    args = ["launch", str(CONFIGS / "smoke.yaml"), "--dry-run", "--set",
            f"search.objectives.beta_vae.beta=[{betas}]", "--set",
            "search.seeds=1000"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "50000 trials" in result.output and "seeds=0..999 (1000)" in result.output
    assert len(result.output.splitlines()) < 10 and "997, 998" not in result.output


def test_dry_run_of_optuna_describes_the_search(in_tmp):
    result = runner.invoke(app, ["launch", str(CONFIGS / "optuna_beta_capacity.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "20 trials (60 models)" in result.output and "optuna (tpe): 20 configurations" in result.output


@pytest.mark.parametrize("command", ["validate", "launch"])
def test_config_error_exits_2_and_names_key_and_value(command, in_tmp):
    result = runner.invoke(app, [command, str(CONFIGS / "smoke.yaml"), "--set", "search.objectives.beta_vae.beta=[0]"])
    assert result.exit_code == 2
    assert "search.objectives.beta_vae.beta = 0: must be > 0" in result.output
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


@pytest.mark.parametrize("address", ["127.0.0.1", "head:port", "127.0.0.1:99999", "[::1:6379"])
def test_a_malformed_ray_address_exits_3_naming_it_before_anything_is_created(address, in_tmp):
    # A port that is not a number ended in urllib's ValueError and a traceback.
    result = runner.invoke(app, ["launch", str(CONFIGS / "smoke.yaml"), "--address", address])
    assert result.exit_code == 3, result.output
    assert f"Ray address {address!r}: expected host:port (or ray://host:port)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert nothing_created(in_tmp)


@pytest.mark.parametrize("rate", ["0", "-5"])
def test_a_rate_that_is_not_positive_exits_2_naming_the_option(rate, in_tmp):
    result = runner.invoke(app, ["launch", str(CONFIGS / "smoke.yaml"), "--dry-run", "--rate", rate])
    assert result.exit_code == 2, result.output
    words = " ".join(result.output.replace("│", " ").split())  # as read, without the error box's line breaks
    assert "Invalid value for '--rate': Input should be greater than or equal to 0.000001" in words
    assert "sweep 'smoke'" not in result.output and nothing_created(in_tmp)


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
        ["launch", str(CONFIGS / "smoke.yaml"), "--address", "alice:hunter2@127.0.0.1:6379"],
        ["resume", "some-sweep", "--address", "alice:hunter2@127.0.0.1:6379"],
    ],
)
def test_credentials_in_a_uri_option_exit_2_and_are_not_echoed(args, in_tmp):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    option = "--tracking-uri" if "--tracking-uri" in args else "--address"
    assert f"{option} = " in result.output and "user name or password in the URI" in result.output
    assert "hunter2" not in result.output and "alice" not in result.output
    assert nothing_created(in_tmp) and not (in_tmp / "out").exists()


def test_launch_refuses_storage_on_a_file_and_creates_nothing(in_tmp):
    (in_tmp / "afile").write_text("")
    result = runner.invoke(app, ["launch", str(CONFIGS / "smoke.yaml"), "--set", "storage=afile"])
    assert result.exit_code == 2, result.output
    assert "storage = 'afile': is a file, not a folder" in result.output
    assert sorted(p.name for p in in_tmp.iterdir()) == ["afile"]


@pytest.mark.parametrize("command", ["validate", "launch"])
def test_storage_where_no_folder_can_be_made_exits_2(command, in_tmp):
    result = runner.invoke(app, [command, str(CONFIGS / "smoke.yaml"), "--set", "storage=/proc/x"])
    assert result.exit_code == 2, result.output
    assert "storage = '/proc/x': cannot be created: /proc is not writable" in result.output
    assert nothing_created(in_tmp)


BOMB = "\n".join(
    ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]" for level in range(1, 9)]
)
SMOKE_TEXT = (CONFIGS / "smoke.yaml").read_text()


@pytest.mark.timeout(10, method="thread")  # a bomb that got through would run for minutes in C loops
@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (f"name: bomb\nx: {{{BOMB.replace(chr(10), ', ')}}}\n", [], "values once its aliases are expanded"),
        (SMOKE_TEXT + "\nsearch:\n  beta: [1]\n", [], "search: duplicate key"),
        ("", [], "the file is empty"),
        (SMOKE_TEXT, [f"training.steps={'9' * 5000}"], "training.steps = 999999999999... (5000 characters)"),
        (SMOKE_TEXT, ["search.seeds=1000000000"], "search.seeds = 1000000000: Input should be less than or equal"),
        (SMOKE_TEXT, ["training.lr=.inf"], "training.lr = inf: Input should be a finite number"),
        (SMOKE_TEXT, ["checkpoints=s3://KEY:hunter2@bucket/p"], "checkpoints = 's3://***@bucket/p'"),
        (SMOKE_TEXT, ["tracking.uri=[hunter2"], "--set tracking.uri: the value is not valid YAML"),
    ],
    ids=["bomb", "duplicate", "empty", "huge-int", "seeds", "lr", "credentials", "set-yaml"],
)
def test_validate_exits_2_with_one_clear_message(in_tmp, text, overrides, expected):
    (in_tmp / "sweep.yaml").write_text(text)
    args = ["validate", "sweep.yaml"] + [arg for o in overrides for arg in ("--set", o)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expected in result.output and "Traceback" not in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("command", ["validate", "launch"])
def test_a_missing_dataset_file_exits_2_naming_data_path(command, in_tmp):
    args = [command, str(CONFIGS / "smoke.yaml"), "--set", "data.name=dsprites_file", "--set", "data.path=gone.npz"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"data.path = 'gone.npz': no such file (relative to {in_tmp})" in result.output
    assert nothing_created(in_tmp)


def test_a_sweep_whose_dataset_file_is_gone_still_shows_selects_and_exports(
    in_tmp, make_sweep, two_by_three, tune_state
):
    # A sweep folder copied from the cluster to a laptop: the dataset file it trained on is not here.
    trials = two_by_three()
    record = make_sweep(in_tmp, trials)
    sweep_dir = in_tmp / "sweeps" / record.sweep_id
    gone = str(in_tmp / "cluster" / "dsprites.npz")
    resolved = yaml.safe_load((sweep_dir / RESOLVED_CONFIG).read_text())
    resolved["data"].update(name="dsprites_file", path=gone)
    (sweep_dir / RESOLVED_CONFIG).write_text(yaml.safe_dump(resolved))
    tune_state(sweep_dir, trials)

    status = runner.invoke(app, ["status", record.sweep_id])
    assert status.exit_code == 0, status.output
    assert "6 terminated" in status.output and all(f"t{i:05d}" in status.output for i in range(6))
    select = runner.invoke(app, ["select", record.sweep_id, "--no-udr"])
    assert select.exit_code == 0, select.output
    export = runner.invoke(app, ["export", record.sweep_id, "--to", "out"])
    assert export.exit_code == 0, export.output
    (index,) = json.loads((in_tmp / "out" / "index.json").read_text())["models"]
    assert json.loads((in_tmp / "out" / index["folder"] / "config.json").read_text())["data"]["path"] == gone


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--median-seed", "--run", "abc"], "--median-seed and --run"),
        (["--picks", "all", "--run", "abc"], "--picks and --run"),
        (["--median-seed", "--picks", "all"], "--median-seed and --picks"),
    ],
)
def test_export_refuses_alternative_choices_given_together(options, named, in_tmp):
    # `--run` silently won over the others.
    result = runner.invoke(app, ["export", "some-sweep", "--to", "out", *options])
    assert result.exit_code == 2, result.output
    assert f"{named}: give one of --median-seed, --picks and --run, not several" in result.output
    assert not (in_tmp / "out").exists()


@pytest.mark.parametrize(
    "command",
    [["status"], ["resume"], ["select", "--no-udr"], ["report"], ["export", "--to", "out"]],
    ids=lambda c: c[0],
)
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "Expecting property name"),
        ("[1, 2]", "not a JSON object"),
        ('{"sweep_id": "x"}', "missing keys"),
    ],
    ids=["not-json", "a-list", "missing-keys"],
)
def test_a_corrupt_sweep_record_exits_3_naming_the_file(command, content, reason, in_tmp):
    sweep_dir = in_tmp / "sweeps" / "fake-20260101-000000-abcd"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(content)
    result = runner.invoke(app, [command[0], sweep_dir.name, *command[1:]])
    assert result.exit_code == 3, result.output
    assert f"{sweep_dir / 'sweep.json'}: not a sweep record written by sweeper" in result.output
    assert reason in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["sweep.json"]
    assert sorted(p.name for p in in_tmp.iterdir()) == ["sweeps"]
