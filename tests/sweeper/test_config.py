import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.config import MAX_YAML_NODES, Range, apply_overrides, load_config
from sweeper.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["smoke.yaml", "beta_grid.yaml", "optuna_beta_capacity.yaml"])
def test_shipped_configs_are_valid(name):
    config = load_config(CONFIGS / name)
    assert config.search.seeds >= 1


def test_beta_grid_is_the_classic_study():
    config = load_config(CONFIGS / "beta_grid.yaml")
    assert config.search.beta == [1, 2, 4, 6, 8, 16]
    assert (config.training.steps, config.training.batch_size, config.training.lr) == (300_000, 64, 1e-4)
    assert config.eval.preset == "reference"


def test_optuna_config_searches_ranges():
    config = load_config(CONFIGS / "optuna_beta_capacity.yaml")
    assert isinstance(config.search.beta, Range) and config.search.beta.log
    assert config.search.kind == "optuna" and config.search.num_samples == 20


def test_overrides_reach_nested_keys_and_parse_values():
    config = load_config(CONFIGS / "smoke.yaml", ["training.steps=30", "search.beta=[2, 3]", "eval.metrics=[mig]"])
    assert config.training.steps == 30
    assert config.search.beta == [2.0, 3.0]
    assert config.eval.metrics == ("mig",)


def test_trial_settings_take_threads_from_the_cpu_resources():
    config = load_config(CONFIGS / "smoke.yaml", ["resources.cpu=2"])
    assert config.trial_settings().training.threads == 2


def test_tracking_uri_prefers_config_then_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert load_config(CONFIGS / "smoke.yaml").tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert load_config(CONFIGS / "smoke.yaml").tracking_uri() == "http://tracker:5000"
    assert load_config(CONFIGS / "smoke.yaml", ["tracking.uri=sqlite:///x.db"]).tracking_uri() == "sqlite:///x.db"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("search.beta=[0, 1]", r"search\.beta = 0\.0: must be > 0"),
        ("search.beta=[-2]", r"search\.beta = -2\.0: must be > 0"),
        ("search.capacity=[-1]", r"search\.capacity = -1\.0: C_max must be >= 0"),
        ("search.seeds=0", r"search\.seeds = 0: Input should be greater than or equal to 1"),
        ("training.stepz=3", r"training\.stepz: unknown key"),
        ("bogus=1", r"bogus: unknown key"),
        ("training.steps=many", r"training\.steps = 'many': Input should be a valid integer"),
        ("search.metric=disent/nope", r"search\.metric = 'disent/nope': not reported"),
        ("search.kind=optuna", r"search\.num_samples is required"),
        ("search.beta={low: 3, high: 1}", r"search\.beta\.low = 3\.0: must be below high = 1\.0"),
        ("resources.gpu=1.5", r"resources\.gpu = 1\.5: .*whole number"),
        ("eval.overrides={mig: {num_trian: 3}}", r"overrides\.mig\.num_trian: unknown size"),
        ("storage=s3://bucket/sweeps", r"storage = 's3://bucket/sweeps': must be a folder .* under `checkpoints`"),
        ("checkpoints=/mnt/shared", r"checkpoints = '/mnt/shared': must be an object-store URI .* set `storage`"),
        ("checkpoints=s3://", r"checkpoints = 's3://': must be an object-store URI with a bucket"),
        ("checkpoints=ftp://host/x", r"checkpoints = 'ftp://host/x': must be an object-store URI"),
        # non-finite values, which training would meet only as a NonFiniteLossError
        ("search.beta=[1, .inf]", r"search\.beta\.1 = inf: Input should be a finite number"),
        ("search.beta=[.nan]", r"search\.beta\.0 = nan: Input should be a finite number"),
        ("search.capacity=[.inf]", r"search\.capacity\.0 = inf: Input should be a finite number"),
        ("search.beta={low: 1, high: .inf}", r"search\.beta\.high = inf: Input should be a finite number"),
        ("search.capacity={low: .nan, high: 2}", r"search\.capacity\.low = nan: Input should be a finite number"),
        ("search.capacity={low: 0, high: 4, log: true}", r"search\.capacity\.low = 0\.0: a log range must start above"),
        ("training.lr=.inf", r"training\.lr = inf: Input should be a finite number"),
        ("training.lr=.nan", r"training\.lr = nan: Input should be a finite number"),
        ("resources.cpu=.inf", r"resources\.cpu = inf: Input should be a finite number"),
        # absurd sizes, with the bound in the message (a billion seeds was a MemoryError)
        ("search.seeds=1000000000", r"search\.seeds = 1000000000: Input should be less than or equal to 1000"),
        ("search.num_samples=1000000000", r"search\.num_samples = 1000000000: .* less than or equal to 100000"),
        ("training.steps=10000000000", r"training\.steps = 10000000000: .* less than or equal to 1000000000"),
        ("training.batch_size=100000", r"training\.batch_size = 100000: .* less than or equal to 65536"),
        ("training.seed_offset=4294967296", r"training\.seed_offset = 4294967296: .* less than or equal to 2147483648"),
        ("objective.capacity_steps=10000000000", r"objective\.capacity_steps = 10000000000: .* or equal to 1000000000"),
        ("eval.every=10000000000", r"eval\.every = 10000000000: must be at most 1000000000"),
        ("eval.overrides={mig: {num_train: 100000000}}", r"mig\.num_train = 100000000: must be between 1 and 10000000"),
        ("model.latent_dim=1099511627776", r"model\.latent_dim = 1099511627776: .* less than or equal to 1024"),
        # a number that Python would refuse to read, given quoted so that it reaches validation
        (f"training.steps='{'1' * 5000}'", r"training\.steps = '1{59}\.\.\. \(5002 characters\): Unable to parse"),
    ],
)
def test_bad_values_name_the_file_key_and_value(override, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(CONFIGS / "smoke.yaml", [override])
    assert str(CONFIGS / "smoke.yaml") in str(info.value)
    assert info.value.exit_code == 2


def test_an_optuna_search_with_nothing_to_search_is_refused():
    # Ray's Optuna searcher would fail only when the sweep asks for its first configuration.
    overrides = ["search.kind=optuna", "search.num_samples=2", "search.beta=[4.0]"]
    with pytest.raises(ConfigError, match=r"beta = \[4\.0\], capacity = \[0\.0\]: optuna needs something to search"):
        load_config(CONFIGS / "smoke.yaml", overrides)
    load_config(CONFIGS / "smoke.yaml", [*overrides[:2], "search.beta=[4.0, 8.0]"])


def test_metric_of_an_unselected_metric_is_refused():
    with pytest.raises(ConfigError, match="not reported"):
        load_config(CONFIGS / "smoke.yaml", ["eval.metrics=[dci]", "search.metric=disent/mig"])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")


def test_invalid_yaml_reports_line_and_column(tmp_path):
    path = write(tmp_path, "name: x\nsearch:\n  beta: [1, 2\n  seeds: 2\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+"):
        load_config(path)


def test_missing_required_section(tmp_path):
    with pytest.raises(ConfigError, match="search: required key is missing"):
        load_config(write(tmp_path, "name: x\n"))


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


@pytest.mark.parametrize("text", ["training.steps", "=3", "a..b=1"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides({}, [text])


def test_override_through_a_value_is_refused():
    with pytest.raises(ConfigError, match="name holds 'x', not a section"):
        apply_overrides({"name": "x"}, ["name.inner=1"])


# -- what a careless or hostile config file holds -------------------------------------------
SMOKE_TEXT = (CONFIGS / "smoke.yaml").read_text()
runner = CliRunner()
# A bomb that got through would run for minutes in C loops, which a timeout signal waits for: the thread
# method ends the test run instead.
within_seconds = pytest.mark.timeout(10, method="thread")


@pytest.fixture
def no_uri_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def alias_bomb(levels: int) -> str:
    """A "billion laughs": each level lists the one before ten times, so it expands to 10**levels values."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return "\n".join(lines)


@within_seconds
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    # 10**9 values once expanded: constructing, validating and echoing them took minutes and gigabytes.
    text = f"name: bomb\nx: {{{alias_bomb(9).replace(chr(10), ', ')}}}\nsearch:\n  beta: *l8\n"
    with pytest.raises(ConfigError, match=rf"more than {MAX_YAML_NODES} values once its aliases are expanded"):
        load_config(write(tmp_path, text))


@within_seconds
def test_an_alias_bomb_in_an_override_is_refused():
    bomb = "{" + alias_bomb(9).replace("\n", ", ") + "}"
    with pytest.raises(ConfigError, match=r"--set description\.l\d: more than \d+ values once its aliases"):
        apply_overrides({}, [f"description={bomb}"])


def test_aliases_within_the_limit_are_still_read(tmp_path):
    config = load_config(write(tmp_path, "name: x\nsearch:\n  beta: &values [1.0, 2.0]\n  capacity: *values\n"))
    assert config.search.beta == config.search.capacity == [1.0, 2.0]


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2, column 9: search\.more: an alias refers to a value that contains"):
        load_config(write(tmp_path, "name: x\nsearch: &s\n  beta: [1]\n  more: *s\n"))


def test_a_section_given_twice_is_refused_naming_the_key_and_lines(tmp_path):
    # PyYAML keeps the second `training:`, so lr fell back to its default without a word.
    text = "name: x\ntraining:\n  lr: 0.001\nsearch:\n  beta: [1]\ntraining:\n  steps: 10\n"
    expected = r"invalid YAML at line 6, column 1: training: duplicate key \(first given at line 2\)"
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_a_key_given_twice_in_a_section_or_an_override_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"line 4, column 3: search\.beta: duplicate key \(first given at line 3\)"):
        load_config(write(tmp_path, "name: x\nsearch:\n  beta: [1]\n  beta: [2]\n"))
    with pytest.raises(ConfigError, match=r"--set search\.seeds: duplicate key"):
        apply_overrides({}, ["search={beta: [1], seeds: 2, seeds: 3}"])


def test_a_merge_key_may_still_be_overridden_key_by_key():
    raw = apply_overrides({}, ["search={<<: {beta: [1], seeds: 2}, seeds: 3}"])
    assert raw["search"] == {"beta": [1], "seeds": 3}


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n"])
def test_an_empty_file_is_called_empty(tmp_path, text):
    with pytest.raises(ConfigError, match=r"sweep\.yaml: the file is empty"):
        load_config(write(tmp_path, text))


def test_a_number_too_long_to_read_names_the_key_and_line(tmp_path):
    # Python refuses to read an int of more than 4300 digits: this was a ValueError traceback.
    huge = "1" * 5000
    path = write(tmp_path, SMOKE_TEXT.replace("  steps: 150", f"  steps: {huge}", 1))
    expected = r"line 10, column 10: training\.steps = 1{12}\.\.\. \(5000 characters\): too long for a number"
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert info.value.exit_code == 2 and len(str(info.value)) < 300


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


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        (["tracking.uri=http://admin:hunter2@tracker:5000"], "tracking.uri = 'http://***@tracker:5000'"),
        (["tracking.uri=postgresql://mlflow:hunter2@db/mlflow"], "tracking.uri = 'postgresql://***@db/mlflow'"),
        (["checkpoints=s3://AKIAKEY:hunter2@bucket/p"], "checkpoints = 's3://***@bucket/p'"),
        (["checkpoints=s3://AKIAKEY:hun/ter2+x@bucket/p"], "checkpoints = 's3://***@bucket/p'"),  # AWS secrets hold '/'
        (["checkpoints=gs://token:hunter2@bucket/p"], "checkpoints = 'gs://***@bucket/p'"),
        (["storage=s3://AKIAKEY:hunter2@bucket/p"], "storage = 's3://***@bucket/p'"),
        (["data.name=npz", "data.path=s3://AKIAKEY:hunter2@bucket/d.npz"], "data.path = 's3://***@bucket/d.npz'"),
        (["ray.address=ray://admin:hunter2@head:10001"], "ray.address = 'ray://***@head:10001'"),
    ],
)
def test_credentials_in_any_uri_are_refused_and_not_shown(no_uri_environment, overrides, shown):
    with pytest.raises(ConfigError, match="a user name or password in the URI") as info:
        load_config(CONFIGS / "smoke.yaml", overrides)
    assert shown in str(info.value)
    assert "hunter2" not in str(info.value) and "ter2" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "uri", "hint"),
    [
        ("MLFLOW_TRACKING_URI", "https://admin:hunter2@tracker", "MLFLOW_TRACKING_PASSWORD"),
        ("RAY_ADDRESS", "ray://admin:hunter2@head:10001", "environment"),
    ],
)
def test_credentials_in_an_environment_uri_are_refused(no_uri_environment, monkeypatch, variable, uri, hint):
    monkeypatch.setenv(variable, uri)
    expected = rf"\${variable} = '\w+://\*\*\*@[^']+': a user name or password .*{hint}"
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(CONFIGS / "smoke.yaml")
    assert "hunter2" not in str(info.value)


def test_uris_without_credentials_are_accepted(no_uri_environment):
    overrides = ["tracking.uri=http://tracker:5000/base@v2", "checkpoints=s3://bucket/p@v1", "ray.address=ray://h:1"]
    config = load_config(CONFIGS / "smoke.yaml", overrides)
    assert (config.tracking_uri(), config.checkpoints) == ("http://tracker:5000/base@v2", "s3://bucket/p@v1")


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
        load_config(CONFIGS / "smoke.yaml", [f"storage={tmp_path}/afile"])
    expected = rf"storage = '{tmp_path}/afile/sub': cannot be created: {tmp_path}/afile is a file, not a folder"
    with pytest.raises(ConfigError, match=expected):
        load_config(CONFIGS / "smoke.yaml", [f"storage={tmp_path}/afile/sub"])


def test_storage_in_a_folder_that_is_not_writable_is_refused(unwritable_folder):
    storage = unwritable_folder / "sweeps" / "here"
    expected = rf"storage = '{storage}': cannot be created: {unwritable_folder} is not writable"
    with pytest.raises(ConfigError, match=expected):
        load_config(CONFIGS / "smoke.yaml", [f"storage={storage}"])


def test_storage_that_does_not_exist_yet_is_accepted_and_not_created(tmp_path):
    storage = tmp_path / "new" / "sweeps"
    assert load_config(CONFIGS / "smoke.yaml", [f"storage={storage}"]).storage == str(storage)
    assert not (tmp_path / "new").exists()


# -- the same through the command line ---------------------------------------------------------
def test_cli_launch_refuses_storage_on_a_file_and_creates_nothing(tmp_path, monkeypatch, no_uri_environment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    result = runner.invoke(app, ["launch", str(CONFIGS / "smoke.yaml"), "--set", "storage=afile"])
    assert result.exit_code == 2, result.output
    assert "storage = 'afile': is a file, not a folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@within_seconds
@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (f"name: bomb\nx: {{{alias_bomb(9).replace(chr(10), ', ')}}}\n", [], "values once its aliases are expanded"),
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
def test_cli_validate_exits_2_with_one_clear_message(tmp_path, no_uri_environment, text, overrides, expected):
    args = ["validate", str(write(tmp_path, text))] + [arg for o in overrides for arg in ("--set", o)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expected in result.output and "Traceback" not in result.output
    assert "hunter2" not in result.output
