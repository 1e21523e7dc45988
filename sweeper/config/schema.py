"""The sweep config's schema: what each key may hold, checked from the config alone.

Pure: nothing here reads a file, a dataset header or the environment, so a
sweep's resolved config reads back the same on any machine (`sweeper status`
on a laptop with the sweep folder copied from the cluster). What the config
points at on this machine is checked by `sweeper.config.machine`, where a
command starts work.

The trial-level sections (data, model, objective, training, eval) are the
trainables' own settings models, embedded unchanged, so the file and the
trials cannot disagree about a key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AllowInfNan, Field, field_validator, model_validator

from sweeper.uris import refuse_credentials
from trainables.settings import (
    DataSettings,
    EvalSettings,
    Integer,
    ModelSettings,
    ObjectiveSettings,
    Real,
    Strict,
    TrainingSettings,
    TrialSettings,
    metric_outputs,
)

OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")  # what pyarrow.fs, and so Ray, can write to
TRAINING_METRICS = ("loss", "recon", "kl", "active_latents")
MAX_SEEDS = 1000
MAX_SAMPLES = 100_000  # optuna configurations
MAX_MODELS = 100_000  # configurations x seeds in one sweep: each is an MLflow run and a line of Tune's state
MAX_EVAL_EVERY = 10**9  # as training.steps
FiniteFloat = Annotated[Real, AllowInfNan(False)]


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
    seeds: Integer = Field(
        1, ge=1, le=MAX_SEEDS, description="repeats of every configuration, seeds seed_offset .. +seeds-1"
    )
    num_samples: Integer | None = Field(None, ge=1, le=MAX_SAMPLES, description="optuna: configurations to try")
    sampler: Literal["tpe", "gp", "random", "nsga2"] = "tpe"
    metric: str | list[str] = Field("loss", description="one metric, or a list for a multi-objective search")
    mode: Mode | list[Mode] = Field("min", description="one per metric")
    scheduler: Literal["fifo", "asha", "pareto"] = "fifo"
    reduction_factor: Integer = Field(4, ge=2, le=100, description="asha and pareto: 1 in this many go on at a rung")
    max_concurrent: Integer | None = Field(None, ge=1)
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

    @model_validator(mode="after")
    def _bounded_models(self) -> SearchConfig:
        models = self.configurations * self.seeds
        if models > MAX_MODELS:
            grid = f" ({len(self.beta)} beta x {len(self.capacity)} C_max)" if self.kind == "grid" else ""
            raise ValueError(
                f"seeds = {self.seeds} over {self.configurations:,} configurations{grid} = {models:,} models: "
                f"more than the {MAX_MODELS:,} one sweep may train (configurations x seeds)"
            )
        return self

    @property
    def configurations(self) -> int:
        """The (beta, C_max) pairs trained: every pair of a grid, or Optuna's samples."""
        if self.kind == "grid":
            return len(self.beta) * len(self.capacity)
        return self.num_samples or 0

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
    cpu: Real = Field(1.0, gt=0, allow_inf_nan=False)
    gpu: Real = Field(0.0, ge=0, allow_inf_nan=False, description="fractions share one GPU: 0.25 packs four on it")

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError(f"a trial asks for {gpu} GPUs: above 1 it must be a whole number")
        return gpu


class TrackingConfig(Strict):
    uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    experiment: str | None = Field(None, description="default: the sweep name")
    wait_s: Real = Field(
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
    max_failures: Integer = Field(2, ge=0, description="retries of a trial from its last checkpoint")


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
    def _no_credentials_in_data_path(cls, data: DataSettings) -> DataSettings:
        refuse_credentials(data.path, "data.path")
        refuse_credentials(data.background, "data.background")
        return data

    @field_validator("eval")
    @classmethod
    def _eval_every_is_bounded(cls, settings: EvalSettings) -> EvalSettings:
        if settings.every > MAX_EVAL_EVERY:
            raise ValueError(f"every = {settings.every}: must be at most {MAX_EVAL_EVERY}")
        return settings

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


def reported_metrics(config: SweepConfig) -> set[str]:
    """Every scalar a trial reports that a search may optimise."""
    names = set(TRAINING_METRICS)
    if config.eval.metrics:
        names |= {f"disent/{name}" for metric in config.eval.metrics for name in metric_outputs(metric)}
    return names
