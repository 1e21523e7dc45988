"""The schema: every key's bounds and cross-checks, read from the config alone, with errors that name
the file, key and value."""

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from sweeper.config import Range, SweepConfig, load_config
from sweeper.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
BETA = "search.objectives.beta_vae.beta"  # smoke.yaml's one searched weight
BETA_KEY = re.escape(BETA)


def test_beta_grid_is_the_classic_study():
    config = load_config(CONFIGS / "beta_grid.yaml")
    assert config.search.objectives == {"beta_vae": {"beta": [1, 2, 4, 6, 8, 16]}}
    assert (config.training.steps, config.training.batch_size, config.training.lr) == (300_000, 64, 1e-4)
    assert config.eval.preset == "reference"


def test_optuna_config_searches_ranges():
    config = load_config(CONFIGS / "optuna_beta_capacity.yaml")
    gamma = config.search.objectives["annealed_vae"]["gamma"]
    assert isinstance(gamma, Range) and gamma.log
    assert config.search.kind == "optuna" and config.search.num_samples == 20


def test_trial_settings_take_threads_from_the_cpu_resources():
    config = load_config(CONFIGS / "smoke.yaml", ["resources.cpu=2"])
    assert config.trial_settings().training.threads == 2


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("search.objectives.beta_vae.beta=[0, 1]", r"search\.objectives\.beta_vae\.beta = 0: must be > 0"),
        ("search.seeds=0", r"search\.seeds = 0: Input should be greater than or equal to 1"),
        ("training.stepz=3", r"training\.stepz: unknown key"),
        ("bogus=1", r"bogus: unknown key"),
        ("training.steps=many", r"training\.steps = 'many': Input should be a valid integer"),
        ("search.metric=disent/nope", r"search\.metric = 'disent/nope': not reported"),
        ("search.kind=optuna", r"search\.num_samples is required"),
        (f"{BETA}={{low: 3, high: 1}}", rf"{BETA_KEY}\.low = 3\.0: must be below high = 1\.0"),
        ("resources.gpu=1.5", r"resources\.gpu = 1\.5: .*whole number"),
        ("eval.overrides={mig: {num_trian: 3}}", r"overrides\.mig\.num_trian: unknown size"),
        ("storage=s3://bucket/sweeps", r"storage = 's3://bucket/sweeps': must be a folder .* under `checkpoints`"),
        ("checkpoints=/mnt/shared", r"checkpoints = '/mnt/shared': must be an object-store URI .* set `storage`"),
        ("checkpoints=s3://", r"checkpoints = 's3://': must be an object-store URI with a bucket"),
        ("checkpoints=ftp://host/x", r"checkpoints = 'ftp://host/x': must be an object-store URI"),
        # non-finite values, which training would meet only as a NonFiniteLossError
        (f"{BETA}=[1, .inf]", rf"{BETA_KEY}\.1 = inf: Input should be a finite number"),
        (f"{BETA}=[.nan]", rf"{BETA_KEY}\.0 = nan: Input should be a finite number"),
        (f"{BETA}={{low: 1, high: .inf}}", rf"{BETA_KEY}\.high = inf: Input should be a finite number"),
        (f"{BETA}={{low: .nan, high: 2}}", rf"{BETA_KEY}\.low = nan: Input should be a finite number"),
        (f"{BETA}={{low: 0, high: 4, log: true}}", rf"{BETA_KEY}\.low = 0\.0: a log range must start above"),
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


def test_metric_of_an_unselected_metric_is_refused():
    with pytest.raises(ConfigError, match="not reported"):
        load_config(CONFIGS / "smoke.yaml", ["eval.metrics=[dci]", "search.metric=disent/mig"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([f"{BETA}=[{', '.join(str(b) for b in range(1, 401))}]", "search.seeds=1000"],
         "search.seeds = 1000 over 400 configurations = 400,000 models: more than the 100,000 one sweep may train"),
        (["search.kind=optuna", "search.num_samples=100000", "search.seeds=2", f"{BETA}={{low: 1, high: 8}}"],
         "search.seeds = 2 over 100,000 configurations = 200,000 models: more than the 100,000 one sweep may train"),
    ],
)
def test_the_models_of_one_sweep_are_bounded(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "smoke.yaml", overrides)
    assert str(info.value).splitlines()[1].startswith(f"  {expected}")


def test_a_sweep_at_the_bound_of_models_is_accepted():
    beta = f"{BETA}=[{', '.join(str(b) for b in range(1, 101))}]"
    assert load_config(CONFIGS / "smoke.yaml", [beta, "search.seeds=1000"]).search.trained_configurations() == 100


def test_missing_required_section(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match="search: required key is missing"):
        load_config(path)


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
        (["ray.address=admin:hunter2@head:6379"], "ray.address = '***@head:6379'"),
    ],
)
def test_credentials_in_any_uri_are_refused_and_not_shown(overrides, shown):
    with pytest.raises(ConfigError, match="a user name or password in the URI") as info:
        load_config(CONFIGS / "smoke.yaml", overrides)
    assert shown in str(info.value)
    assert "hunter2" not in str(info.value) and "ter2" not in str(info.value)


def test_uris_without_credentials_are_accepted():
    overrides = ["tracking.uri=http://tracker:5000/base@v2", "checkpoints=s3://bucket/p@v1", "ray.address=ray://h:1"]
    config = load_config(CONFIGS / "smoke.yaml", overrides)
    assert (config.tracking.uri, config.checkpoints) == ("http://tracker:5000/base@v2", "s3://bucket/p@v1")



# -- booleans are not numbers -----------------------------------------------------------------
def number_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The key of every integer or float setting of `model` and its sections, found from the schema so
    that a setting added later is covered too."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += number_keys(annotation, f"{prefix}{name}.")
        elif {int, float} & leaf_types(annotation):
            keys.append(f"{prefix}{name}")
    return keys


def leaf_types(annotation: object) -> set[object]:
    """`int | None` -> {int, NoneType}; `list[Annotated[float, ...]] | Range` -> {float, Range}."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return leaf_types(args[0])
    return set().union(*map(leaf_types, args)) if args else {annotation}


def test_every_number_setting_is_found_in_the_schema():
    keys = number_keys(SweepConfig)
    assert {"training.steps", "training.lr", "eval.every", "search.objectives", "resources.gpu"} <= set(keys)
    assert len(keys) >= 20 and "training.amp" not in keys and "search.pack_seeds" not in keys


@pytest.mark.parametrize("key", number_keys(SweepConfig))
def test_a_boolean_is_refused_by_every_number_setting(key):
    # YAML reads `true` as a boolean, and pydantic took it as 1: `training.steps=true` was one step.
    with pytest.raises(ConfigError, match=rf"\n  {re.escape(key)} = True: ") as info:
        load_config(CONFIGS / "smoke.yaml", [f"{key}=true"])
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([f"{BETA}=[1, true]"], f"{BETA}.1 = True: must be a number, not true or false"),
        (["search.kind=optuna", "search.num_samples=2", f"{BETA}={{low: true, high: 2}}"],
         f"{BETA}.low = True: must be a number, not true or false"),
        (["eval.overrides={mig: {num_train: yes}}"], "eval.overrides.mig.num_train = True: must be a number"),
    ],
)
def test_a_boolean_inside_a_list_a_range_or_a_size_is_refused(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "smoke.yaml", overrides)
    assert expected in str(info.value).splitlines()[1]


def test_numbers_written_as_yaml_reads_them_are_still_accepted():
    # PyYAML reads `1e-3` (no dot) as a string; pydantic parses it, as before.
    config = load_config(CONFIGS / "smoke.yaml", ["training.lr=1e-3", "resources.cpu=2", f"{BETA}=[1, 2.5]"])
    beta = config.search.objectives["beta_vae"]["beta"]
    assert (config.training.lr, config.resources.cpu, beta) == (1e-3, 2.0, [1.0, 2.5])
