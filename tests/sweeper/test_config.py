from pathlib import Path

import pytest

from sweeper.config import Range, apply_overrides, load_config
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
