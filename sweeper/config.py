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
from pydantic import (
    Field,
    FiniteFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from sweeper.errors import ConfigError
from sweeper.uris import CredentialsInURI, redact, refuse_credentials
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
TRAINING_METRICS = ("loss", "recon", "kl", "active_latents")
MAX_SEEDS = 1000
MAX_SAMPLES = 100_000  # optuna configurations
MAX_EVAL_EVERY = 10**9  # as training.steps


class Range(Strict):
    """A continuous interval for Optuna to search."""

    low: FiniteFloat
    high: FiniteFloat
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low = {self.low}: must be below high = {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"low = {self.low}: a log range must start above 0")
        return self


Values = list[FiniteFloat] | Range


def _lowest(values: Values) -> float:
    return values.low if isinstance(values, Range) else min(values)


Mode = Literal["min", "max"]


class SearchConfig(Strict):
    kind: Literal["grid", "optuna"] = "grid"
    beta: Values = Field(description="grid: a list of values; optuna: a list (categorical) or a range")
    capacity: Values = Field([0.0], description="C_max in nats; 0 is the plain beta-VAE")
    seeds: int = Field(
        1, ge=1, le=MAX_SEEDS, description="repeats of every configuration, seeds seed_offset .. +seeds-1"
    )
    num_samples: int | None = Field(None, ge=1, le=MAX_SAMPLES, description="optuna: configurations to try")
    sampler: Literal["tpe", "gp", "random", "nsga2"] = "tpe"
    metric: str | list[str] = Field("loss", description="one metric, or a list for a multi-objective search")
    mode: Mode | list[Mode] = Field("min", description="one per metric")
    scheduler: Literal["fifo", "asha", "pareto"] = "fifo"
    reduction_factor: int = Field(4, ge=2, le=100, description="asha and pareto: 1 in this many go on at a rung")
    max_concurrent: int | None = Field(None, ge=1)
    pack_seeds: bool = Field(
        False, description="train the seeds of a configuration as one stacked model in one trial"
    )

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
        if self.kind == "optuna" and self.scheduler == "asha" and self.seeds > 1 and not self.pack_seeds:
            raise ValueError(
                "scheduler 'asha' cannot be combined with optuna seed repeats (seeds > 1): "
                "an early-stopped repeat would corrupt the mean that Optuna learns from; "
                "set pack_seeds: true to train the seeds together and stop them together"
            )
        self._consistent_objectives()
        return self

    def _consistent_objectives(self) -> None:
        if isinstance(self.metric, list) != isinstance(self.mode, list) or len(self.metrics) != len(self.modes):
            raise ValueError(
                f"metric = {self.metric} and mode = {self.mode}: give one mode per metric"
            )
        if not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metric = {self.metric}: needs one or more metrics, each once")
        if self.scheduler == "asha" and len(self.metrics) > 1:
            raise ValueError(
                f"scheduler = 'asha' with metric = {self.metric}: ASHA stops on one metric; "
                "use scheduler: pareto for several"
            )
        if self.scheduler == "pareto" and not self.pack_seeds:
            raise ValueError(
                "scheduler = 'pareto' needs pack_seeds: true: it stops packs on their seeds' means"
            )

    @property
    def metrics(self) -> list[str]:
        """The objectives, a list whether one was given or several."""
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    @property
    def modes(self) -> list[str]:
        return list(self.mode) if isinstance(self.mode, list) else [self.mode]

    def objectives_text(self) -> str:
        """`loss (min)`, or `recon (min), disent/mig (max)` for several objectives."""
        return ", ".join(f"{m} ({mode})" for m, mode in zip(self.metrics, self.modes))


class ResourcesConfig(Strict):
    cpu: float = Field(1.0, gt=0, allow_inf_nan=False)
    gpu: float = Field(0.0, ge=0, allow_inf_nan=False, description="fractions share one GPU: 0.25 packs four on it")

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError(f"a trial asks for {gpu} GPUs: above 1 it must be a whole number")
        return gpu


class TrackingConfig(Strict):
    uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    experiment: str | None = Field(None, description="default: the sweep name")
    wait_s: float = Field(
        120.0, ge=0, le=86_400, allow_inf_nan=False,
        description="at the end of a sweep, how long to wait for a tracking server that is away before its "
        "writes are left in the sweep folder for `sweeper resume`",
    )

    @field_validator("uri")
    @classmethod
    def _no_credentials(cls, uri: str | None) -> str | None:
        refuse_credentials(uri, "tracking.uri")
        return uri


class RayConfig(Strict):
    address: str | None = Field(None, description="an existing cluster; default: $RAY_ADDRESS, else a local Ray")

    @field_validator("address")
    @classmethod
    def _no_credentials(cls, address: str | None) -> str | None:
        refuse_credentials(address, "ray.address")
        return address


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
        refuse_credentials(storage, "storage")
        if "://" in storage:
            raise ValueError(
                "must be a folder (it holds the Optuna journal and the tracking buffer, which need a "
                "filesystem); put an object-store URI under `checkpoints` instead"
            )
        _check_storage_folder(Path(storage).expanduser())
        return storage

    @field_validator("checkpoints")
    @classmethod
    def _an_object_store(cls, checkpoints: str | None) -> str | None:
        if checkpoints is None:
            return None
        refuse_credentials(checkpoints, "checkpoints")
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
        """The data path (a file, or a folder for smallnorb and cars3d) and the scream variant's background
        made absolute (trials and later commands run elsewhere), and checked as far as their headers go;
        the dataset's content is checked when the sweep reads it (sweeper.run.datasets)."""
        from trainables.data import DataError, check_settings

        for key in ("path", "background"):
            value = getattr(data, key)
            if value is None:
                continue
            refuse_credentials(value, f"data.{key}")
            path = Path(value).expanduser()
            if not path.exists():
                where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
                raise ValueError(f"{key} = {value!r}: no such file{where}")
            data = data.model_copy(update={key: str(path.resolve())})
        try:
            check_settings(data)
        except DataError as exc:
            about_background = data.background is not None and str(exc).startswith(data.background)
            key = "background" if about_background else "path" if data.path is not None else "ground_truth"
            raise ValueError(f"{key}: {exc}") from None
        return data

    @field_validator("eval")
    @classmethod
    def _eval_every_is_bounded(cls, settings: EvalSettings) -> EvalSettings:
        if settings.every > MAX_EVAL_EVERY:
            raise ValueError(f"every = {settings.every}: must be at most {MAX_EVAL_EVERY}")
        return settings

    @model_validator(mode="after")
    def _no_credentials_in_env_uris(self) -> SweepConfig:
        """The environment's URIs stand in for unset keys, so they are printed and stored the same way."""
        if not self.tracking.uri:
            refuse_credentials(os.environ.get("MLFLOW_TRACKING_URI"), "$MLFLOW_TRACKING_URI")
        if not self.ray.address:
            refuse_credentials(os.environ.get("RAY_ADDRESS"), "$RAY_ADDRESS")
        return self

    @model_validator(mode="after")
    def _metric_is_reported(self) -> SweepConfig:
        known = reported_metrics(self)
        for metric in self.search.metrics:
            if metric not in known:
                raise ValueError(
                    f"search.metric = {metric!r}: not reported by these trials; "
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


def _check_storage_folder(storage: Path) -> None:
    """Refuse a storage path that launch could not make into a folder, before anything is created.

    An existing storage folder need not be writable: status, report and
    export read the resolved config of a sweep on a read-only mount too.
    """
    try:
        if storage.exists():
            if not storage.is_dir():
                raise ValueError("is a file, not a folder")
            return
        parent = storage.absolute().parent
        while not parent.exists():
            parent = parent.parent
    except OSError as exc:
        raise ValueError(f"cannot be checked: {exc.strerror}") from None
    if not parent.is_dir():
        raise ValueError(f"cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot be created: {parent} is not writable")


def reported_metrics(config: SweepConfig) -> set[str]:
    """Every scalar a trial reports that a search may optimise."""
    names = set(TRAINING_METRICS)
    if config.eval.metrics:
        names |= {f"disent/{name}" for metric in config.eval.metrics for name in metric_outputs(metric)}
    return names


# -- loading -------------------------------------------------------------------------------
MAX_YAML_NODES = 100_000  # values after expanding aliases: far above any sweep config, far below a bomb
MAX_NUMBER_CHARS = 100  # no setting needs a longer number; Python reads no int past 4300 digits
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_KEY_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class YAMLRefused(yaml.MarkedYAMLError):
    """YAML that parses but is refused; its message names the key and shows no whole value."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _TreeCheck:
    """Checks of a composed YAML tree, made before anything in it is constructed.

    An alias is a shared node in the composed tree, so a "billion laughs" bomb
    is measured here in as many steps as it has distinct nodes, instead of the
    minutes and gigabytes its expansion takes to construct, validate and echo.
    A key given twice is refused, where PyYAML would keep the last: a second
    `training:` section would replace the first, whose keys fell back to defaults.
    """

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.sizes: dict[int, int] = {}  # node id -> its size with aliases expanded
        self.open: set[int] = set()  # the collections being measured: one met again is a cycle

    def size(self, node: yaml.Node, path: str) -> int:
        if id(node) in self.sizes:
            return self.sizes[id(node)]
        where = path or "the document"
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
                raise YAMLRefused(
                    f"{where} = {node.value[:12]}... ({len(node.value)} characters): "
                    f"too long for a number (at most {MAX_NUMBER_CHARS})",
                    node.start_mark,
                )
            size = 1
        elif id(node) in self.open:
            raise YAMLRefused(f"{where}: an alias refers to a value that contains it", node.start_mark)
        else:
            self.open.add(id(node))
            size = 1 + sum(self.size(child, child_path) for child, child_path in self._children(node, path))
            self.open.discard(id(node))
        if size > MAX_YAML_NODES:
            raise YAMLRefused(
                f"{where}: more than {MAX_YAML_NODES} values once its aliases are expanded", node.start_mark
            )
        self.sizes[id(node)] = size
        return size

    def _children(self, node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
        if isinstance(node, yaml.SequenceNode):
            return [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        children: list[tuple[yaml.Node, str]] = []
        first_lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            child_path = path
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:  # `<<:` may be overridden
                key = self.loader.construct_object(key_node)
                child_path = f"{path}.{key}" if path else str(key)
                if key in first_lines:
                    raise YAMLRefused(
                        f"{child_path}: duplicate key (first given at line {first_lines[key] + 1})",
                        key_node.start_mark,
                    )
                first_lines[key] = key_node.start_mark.line
            children += [(key_node, child_path), (value_node, child_path)]
        return children


def _load_yaml(text: str, path: str = "") -> tuple[bool, Any]:
    """(whether the text holds a document, its value), checked by _TreeCheck; `path` names its key."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return False, None
        _TreeCheck(loader).size(node, path)
        return True, loader.construct_document(node)
    except RecursionError:
        raise YAMLRefused(f"{path or 'the document'}: nested too deeply", loader.get_mark()) from None
    finally:
        loader.dispose()


def parse_override(text: str) -> tuple[list[str], Any]:
    """`training.steps=200` -> (["training", "steps"], 200); the value is read as YAML.

    Errors name the key but never show the value: it is on a command line, and may be a secret.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY_PATH.fullmatch(key):
        raise ConfigError(f"--set {redact(key)!r}: expected key.path=value, for example --set training.steps=200")
    try:
        value = _load_yaml(raw, key)[1] if raw.strip() else ""
    except YAMLRefused as exc:
        raise ConfigError(f"--set {exc.problem}") from None
    except yaml.YAMLError as exc:
        column = getattr(exc, "problem_mark", None)
        where = f" at column {column.column + 1}" if column else ""
        raise ConfigError(
            f"--set {key}: the value is not valid YAML{where} (not shown, in case it is a secret); "
            "quote it if it is a string"
        ) from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {'.'.join(path)}: {where} holds {_shown(child)}, not a section")
            node = child
        node[path[-1]] = value
    return raw


def _shown(value: object) -> str:
    """A value as an error message may show it: URI credentials masked, and at most 80 characters."""
    text = redact(repr(value))
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _union_branch(part: object) -> str | None:
    """The branch name pydantic puts in an error's location for `list[float] | Range`."""
    text = str(part)
    if text == "list[float]":
        return "list"
    if text == "Range" or text.endswith(", Range]"):
        return "Range"
    return None


def _written_as_range(raw: dict[str, Any], loc: tuple[int | str, ...]) -> bool:
    """Whether the value at `loc`, up to its union branch, was written as a mapping (a Range)."""
    value: Any = raw
    for part in loc:
        if _union_branch(part):
            break
        value = value[part]
    return isinstance(value, dict)


def _format_validation_error(source: str, error: ValidationError, raw: dict[str, Any]) -> str:
    lines = [f"{source}: invalid sweep config"]
    for item in error.errors():
        # `beta: list | Range` reports both branches; keep only the one the value was written as.
        branch = next((b for b in map(_union_branch, item["loc"]) if b), None)
        if branch is not None and _written_as_range(raw, item["loc"]) != (branch == "Range"):
            continue
        key = ".".join(str(p) for p in item["loc"] if not _union_branch(p))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check its spelling and section)")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif isinstance(item.get("ctx", {}).get("error"), CredentialsInURI):
            lines.append(f"  {message}")  # it names its key, and shows the URI masked
        elif isinstance(item["input"], dict):
            # A check across a whole section: its message starts with the key inside the section.
            lines.append(f"  {key}.{message}" if key else f"  {message}")
        else:
            lines.append(f"  {key} = {_shown(item['input'])}: {message}")
    return redact("\n".join(lines))


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        has_document, raw = _load_yaml(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path}: invalid YAML at {where}: {exc.problem}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
    if not has_document:
        raise ConfigError(f"{path}: the file is empty (no YAML in it besides comments and blank lines)")
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
        raise ConfigError(_format_validation_error(source, exc, raw)) from exc


def dump_config(config: SweepConfig) -> str:
    """The fully resolved config as YAML: what a sweep actually ran with."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
