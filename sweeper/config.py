"""A sweep config file -> a validated `SweepConfig`, with errors that name file, key and value.

The trial-level sections (data, model, objective, training, eval) are the
trainables' own settings models, embedded unchanged, so the file and the
trials cannot disagree about a key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from sweeper.errors import ConfigError
from trainables.settings import (
    DataSettings,
    EvalSettings,
    ModelSettings,
    ObjectiveSettings,
    Strict,
    TrainingSettings,
    TrialSettings,
    metric_outputs,
)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")  # what pyarrow.fs, and so Ray, can write to
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")  # user:password@ in a URI
CREDENTIALS_HINT = "give them in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"
TRAINING_METRICS = ("loss", "recon", "kl", "active_latents")


class Range(Strict):
    """A continuous interval for Optuna to search."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low = {self.low}: must be below high = {self.high}")
        return self


Values = list[float] | Range


def _lowest(values: Values) -> float:
    return values.low if isinstance(values, Range) else min(values)


class SearchConfig(Strict):
    kind: Literal["grid", "optuna"] = "grid"
    beta: Values = Field(description="grid: a list of values; optuna: a list (categorical) or a range")
    capacity: Values = Field([0.0], description="C_max in nats; 0 is the plain beta-VAE")
    seeds: int = Field(1, ge=1, description="repeats of every configuration, seeds seed_offset .. +seeds-1")
    num_samples: int | None = Field(None, ge=1, description="optuna: configurations to try")
    sampler: Literal["tpe", "gp", "random"] = "tpe"
    metric: str = "loss"
    mode: Literal["min", "max"] = "min"
    scheduler: Literal["fifo", "asha"] = "fifo"
    max_concurrent: int | None = Field(None, ge=1)

    @field_validator("beta", "capacity")
    @classmethod
    def _non_empty(cls, values: Values) -> Values:
        if isinstance(values, list) and not values:
            raise ValueError("needs at least one value")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        if _lowest(self.beta) <= 0:
            raise ValueError(f"beta = {_lowest(self.beta)}: must be > 0")
        if _lowest(self.capacity) < 0:
            raise ValueError(f"capacity = {_lowest(self.capacity)}: C_max must be >= 0")
        if self.kind == "grid":
            for key in ("beta", "capacity"):
                if isinstance(getattr(self, key), Range):
                    raise ValueError(f"{key}: a grid needs a list of values, not a range")
        if self.kind == "optuna" and self.num_samples is None:
            raise ValueError("num_samples is required when kind is 'optuna'")
        if self.kind == "optuna" and all(isinstance(v, list) and len(v) == 1 for v in (self.beta, self.capacity)):
            raise ValueError(
                f"beta = {self.beta}, capacity = {self.capacity}: optuna needs something to search, "
                "a range or two or more values for beta or capacity (for fixed values use kind: grid)"
            )
        if self.kind == "optuna" and self.scheduler == "asha" and self.seeds > 1:
            raise ValueError(
                "scheduler 'asha' cannot be combined with optuna seed repeats (seeds > 1): "
                "an early-stopped repeat would corrupt the mean that Optuna learns from"
            )
        return self


class ResourcesConfig(Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0, description="fractions share one GPU: 0.25 packs four trials on it")

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError(f"a trial asks for {gpu} GPUs: above 1 it must be a whole number")
        return gpu


class TrackingConfig(Strict):
    uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    experiment: str | None = Field(None, description="default: the sweep name")

    @field_validator("uri")
    @classmethod
    def _no_credentials(cls, uri: str | None) -> str | None:
        # The URI is printed, logged and stored with the sweep; a password must not be.
        if uri and _USERINFO.search(uri):
            raise ValueError(f"a user name or password in the URI; {CREDENTIALS_HINT}")
        return uri


class RayConfig(Strict):
    address: str | None = Field(None, description="an existing cluster; default: $RAY_ADDRESS, else a local Ray")


class FailureConfig(Strict):
    max_failures: int = Field(2, ge=0, description="retries of a trial from its last checkpoint")


class SweepConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    objective: ObjectiveSettings = ObjectiveSettings()
    training: TrainingSettings = TrainingSettings()
    eval: EvalSettings = EvalSettings()
    search: SearchConfig
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    storage: str = Field(
        "./sweeps", description="folder that holds every sweep's state; on several nodes, one they all mount"
    )
    checkpoints: str | None = Field(
        None,
        description="object-store URI (s3://bucket/prefix, gs://bucket/prefix) for the trials' checkpoints "
        "and Ray Tune's experiment state, instead of the sweep folder; `storage` then only needs to be on "
        "the driver's machine",
    )
    ray: RayConfig = RayConfig()
    failure: FailureConfig = FailureConfig()

    @field_validator("storage")
    @classmethod
    def _a_filesystem_path(cls, storage: str) -> str:
        # The sweep folder holds the Optuna journal and the tracking buffer, which need a filesystem.
        if "://" in storage:
            raise ValueError(
                "must be a folder (it holds the Optuna journal and the tracking buffer, which need a "
                "filesystem); put an object-store URI under `checkpoints` instead"
            )
        return storage

    @field_validator("checkpoints")
    @classmethod
    def _an_object_store(cls, checkpoints: str | None) -> str | None:
        if checkpoints is None:
            return None
        scheme, _, rest = checkpoints.partition("://")
        if not rest.strip("/") or scheme not in OBJECT_STORE_SCHEMES:
            raise ValueError(
                f"must be an object-store URI with a bucket ({', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)}); "
                "for a shared filesystem, set `storage` to a folder on it and leave `checkpoints` out"
            )
        return checkpoints.rstrip("/")

    @field_validator("data")
    @classmethod
    def _data_file_is_usable(cls, data: DataSettings) -> DataSettings:
        """A file path made absolute (trials and later commands run elsewhere), and the file checked
        as far as its headers go; its content is checked when the sweep reads it (sweeper.datasets)."""
        from trainables.data import DataError, check_settings

        if data.path is not None:
            path = Path(data.path).expanduser()
            if not path.is_file():
                where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
                raise ValueError(f"path = {data.path!r}: no such file{where}")
            data = data.model_copy(update={"path": str(path.resolve())})
        try:
            check_settings(data)
        except DataError as exc:
            key = "path" if data.path is not None else "ground_truth"
            raise ValueError(f"{key}: {exc}") from None
        return data

    @model_validator(mode="after")
    def _no_credentials_in_env_uri(self) -> SweepConfig:
        if not self.tracking.uri and _USERINFO.search(os.environ.get("MLFLOW_TRACKING_URI", "")):
            raise ValueError(f"$MLFLOW_TRACKING_URI holds a user name or password; {CREDENTIALS_HINT}")
        return self

    @model_validator(mode="after")
    def _metric_is_reported(self) -> SweepConfig:
        known = reported_metrics(self)
        if self.search.metric not in known:
            raise ValueError(
                f"search.metric = {self.search.metric!r}: not reported by these trials; "
                f"choose one of: {', '.join(sorted(known))}"
            )
        return self

    def trial_settings(self) -> TrialSettings:
        """The settings every trial receives; torch threads default to the trial's CPUs."""
        threads = self.training.threads or max(1, int(self.resources.cpu))
        return TrialSettings(
            data=self.data,
            model=self.model,
            objective=self.objective,
            training=self.training.model_copy(update={"threads": threads}),
            eval=self.eval,
        )

    def tracking_uri(self) -> str:
        return self.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI

    def ray_address(self, override: str | None = None) -> str | None:
        return override or self.ray.address or os.environ.get("RAY_ADDRESS") or None


def reported_metrics(config: SweepConfig) -> set[str]:
    """Every scalar a trial reports that a search may optimise."""
    names = set(TRAINING_METRICS)
    if config.eval.metrics:
        names |= {f"disent/{name}" for metric in config.eval.metrics for name in metric_outputs(metric)}
    return names


# -- loading -------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """`training.steps=200` -> (["training", "steps"], 200); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key.strip()):
        raise ConfigError(f"--set {text!r}: expected key.path=value, for example --set training.steps=200")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {text!r}: {where} holds {child!r}, not a section")
            node = child
        node[path[-1]] = value
    return raw


def _union_branch(part: object) -> str | None:
    """The branch name pydantic puts in an error's location for `list[float] | Range`."""
    text = str(part)
    if text == "list[float]":
        return "list"
    if text == "Range" or text.endswith(", Range]"):
        return "Range"
    return None


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid sweep config"]
    for item in error.errors():
        # `beta: list | Range` reports both branches; keep only the one the value was written as.
        branch = next((b for b in map(_union_branch, item["loc"]) if b), None)
        if branch is not None and isinstance(item["input"], dict) != (branch == "Range"):
            continue
        key = ".".join(str(p) for p in item["loc"] if not _union_branch(p))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check its spelling and section)")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif isinstance(item["input"], dict):
            # A check across a whole section: its message starts with the key inside the section.
            lines.append(f"  {key}.{message}" if key else f"  {message}")
        else:
            lines.append(f"  {key} = {redact_uris(repr(item['input']))}: {message}")
    return "\n".join(lines)


def redact_uris(text: str) -> str:
    """`http://user:secret@host` -> `http://***@host`: what an error message may show."""
    return _USERINFO.sub("***@", text)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path}: invalid YAML at {where}: {exc.problem}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides or [])
    return validate_config(raw, source=str(path))


def validate_config(raw: dict[str, Any], source: str) -> SweepConfig:
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from exc


def dump_config(config: SweepConfig) -> str:
    """The fully resolved config as YAML: what a sweep actually ran with."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
