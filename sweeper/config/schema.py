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

import math
from typing import Annotated, Any, Literal

from pydantic import AllowInfNan, Field, field_validator, model_validator

from sweeper.tags import DEFAULT_STORAGE
from sweeper.uris import refuse_credentials
from trainables.report import TRAINING_METRICS
from trainables.settings import (
    OBJECTIVE_WEIGHTS,
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


# A weight of 0 is allowed only where it means something: AnnealedVAE's c_max = 0 holds C(t) at 0.
_MAY_BE_ZERO = {"c_max"}


class SearchConfig(Strict):
    kind: Literal["grid", "optuna"] = "grid"
    objectives: dict[str, dict[str, Values]] = Field(
        description="each objective searched (beta_vae, annealed_vae, factor_vae, dip_vae_i, dip_vae_ii, "
        "beta_tcvae) with the values of its own weights: grid, lists; optuna, a list (categorical) or a range"
    )
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

    @model_validator(mode="before")
    @classmethod
    def _from_beta_and_capacity(cls, data: Any) -> Any:
        """Configs of earlier releases searched `beta` and `capacity` (C_max) of recon + beta * |KL - C(t)|:
        the beta-VAE where C_max = 0, the AnnealedVAE (gamma = beta) elsewhere. Read as those objectives,
        so the resolved config of an earlier sweep still loads."""
        if not isinstance(data, dict) or "objectives" in data or "beta" not in data:
            return data
        data = dict(data)
        beta, capacity = data.pop("beta"), data.pop("capacity", [0.0])
        objectives: dict[str, dict[str, Any]] = {}
        if isinstance(capacity, list):
            if 0 in capacity or not capacity:
                objectives["beta_vae"] = {"beta": beta}
            if any(c != 0 for c in capacity):
                objectives["annealed_vae"] = {"gamma": beta, "c_max": [c for c in capacity if c != 0]}
        else:
            objectives["annealed_vae"] = {"gamma": beta, "c_max": capacity}
        data["objectives"] = objectives
        return data

    @field_validator("objectives")
    @classmethod
    def _known_objectives_and_their_own_weights(cls, objectives: dict[str, dict[str, Values]]) -> dict:
        if not objectives:
            raise ValueError("needs at least one objective")
        for kind, weights in objectives.items():
            if kind not in OBJECTIVE_WEIGHTS:
                raise ValueError(f"{kind}: unknown objective; known: {', '.join(OBJECTIVE_WEIGHTS)}")
            own = OBJECTIVE_WEIGHTS[kind]
            for name, values in weights.items():
                if name not in own:
                    raise ValueError(f"{kind}.{name}: not a weight of {kind} (its weights: {', '.join(own)})")
                if isinstance(values, list) and not values:
                    raise ValueError(f"{kind}.{name}: needs at least one value")
                lowest = _lowest(values)
                if lowest < 0 or (lowest == 0 and name not in _MAY_BE_ZERO):
                    bound = ">= 0" if name in _MAY_BE_ZERO else "> 0"
                    raise ValueError(f"{kind}.{name} = {lowest:g}: must be {bound}")
            missing = [name for name in own if name not in weights]
            if missing:
                raise ValueError(f"{kind}: give the values of {', '.join(missing)}")
        return {kind: {name: weights[name] for name in OBJECTIVE_WEIGHTS[kind]} for kind, weights in objectives.items()}

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        ranges = [
            f"{kind}.{name}" for kind, weights in self.objectives.items()
            for name, values in weights.items() if isinstance(values, Range)
        ]  # fmt: skip
        if self.kind == "grid" and ranges:
            raise ValueError(f"objectives.{ranges[0]}: a grid needs a list of values, not a range")
        if self.kind == "optuna" and self.num_samples is None:
            raise ValueError("num_samples is required when kind is 'optuna'")
        if self.kind == "optuna" and self.configuration_count() == 1:
            raise ValueError(
                f"objectives = {self.objectives}: optuna needs something to search, a range or two or more "
                "values of a weight, or two or more objectives (for fixed values use kind: grid)"
            )
        if self.kind == "optuna" and self.scheduler == "asha" and self.seeds > 1 and not self.pack_seeds:
            raise ValueError(
                "scheduler 'asha' cannot be combined with optuna seed repeats (seeds > 1): "
                "an early-stopped repeat would corrupt the mean that Optuna learns from; "
                "set pack_seeds: true to train the seeds together and stop them together"
            )
        self._consistent_metrics()
        return self

    def configuration_count(self) -> int | None:
        """The configurations of a grid (every objective's own product of its weights' values); for
        Optuna, how many its lists allow, or None when a range makes them unbounded."""
        total = 0
        for weights in self.objectives.values():
            if any(isinstance(values, Range) for values in weights.values()):
                return None
            total += math.prod(len(values) for values in weights.values())
        return total

    @model_validator(mode="after")
    def _bounded_models(self) -> SearchConfig:
        models = self.trained_configurations() * self.seeds
        if models > MAX_MODELS:
            raise ValueError(
                f"seeds = {self.seeds} over {self.trained_configurations():,} configurations = {models:,} models: "
                f"more than the {MAX_MODELS:,} one sweep may train (configurations x seeds)"
            )
        return self

    def trained_configurations(self) -> int:
        """The configurations the sweep trains: every one of a grid, or Optuna's samples."""
        return (self.configuration_count() or 0) if self.kind == "grid" else self.num_samples or 0

    def _consistent_metrics(self) -> None:
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
        """The search metrics, a list whether one was given or several."""
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    @property
    def modes(self) -> list[str]:
        return list(self.mode) if isinstance(self.mode, list) else [self.mode]

    def metrics_text(self) -> str:
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
        DEFAULT_STORAGE, description="folder that holds every sweep's state; on several nodes, one they all mount"
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
