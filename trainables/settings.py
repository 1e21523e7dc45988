"""What one trial needs to know, validated: data, model, objective, training, evaluation.

These models live on the trainable side because trials run inside Ray workers
that import only `trainables`; the sweep config (`sweeper.config`) embeds them
unchanged, so a config file and a trial read the same schema. Unknown keys are
errors everywhere: a typo must not silently fall back to a default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainables.metrics import SPECS
from trainables.metrics.dci import BACKENDS as DCI_BACKENDS

# Every table about the metrics comes from their specs (`trainables.metrics.SPECS`).
METRIC_NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS)
# What an evaluation runs when a config names no metrics: all but the ones asked for by name.
DEFAULT_METRICS: tuple[str, ...] = tuple(spec.name for spec in SPECS if spec.in_default)
# Sample sizes of the reference study (see the metric definitions); `fast` is a tenth of them.
REFERENCE_SIZES: dict[str, dict[str, int]] = {spec.name: spec.preset("reference") for spec in SPECS}
# The scores each metric reports, as the trial names them under "disent/".
METRIC_OUTPUTS: dict[str, tuple[str, ...]] = {spec.name: spec.scores for spec in SPECS}
PRESETS: dict[str, dict[str, dict[str, int]]] = {
    preset: {spec.name: spec.preset(preset) for spec in SPECS} for preset in ("reference", "fast")
}


def metric_outputs(metric: str) -> tuple[str, ...]:
    return METRIC_OUTPUTS[metric]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FILE_DATASETS: tuple[str, ...] = ("dsprites_file", "npz")  # the datasets read from `path`


class DataSettings(Strict):
    """Which ground-truth dataset a trial trains and is scored on (see `trainables.data`).

    name: `dsprites` (procedural, no file), `dsprites_file` (the original
    dSprites .npz, or a smaller grid in its format) or `npz` (your own images,
    factor classes and factor names).
    """

    name: Literal["dsprites", "dsprites_file", "npz"] = "dsprites"
    path: str | None = Field(None, description="the dataset file, for dsprites_file and npz")
    variant: Literal["none", "color", "noisy"] = Field(
        "none", description="color / noisy dSprites made from single-channel images, as in the reference study"
    )
    ground_truth: tuple[str, ...] | None = Field(
        None, description="the factors the metrics score (default all); the others vary at random"
    )

    @model_validator(mode="after")
    def _path_when_needed(self) -> DataSettings:
        if self.name in FILE_DATASETS and not self.path:
            raise ValueError(f"path: required when name is {self.name!r}")
        if self.name not in FILE_DATASETS and self.path is not None:
            raise ValueError(f"path: only {' and '.join(FILE_DATASETS)} read a file; {self.name!r} does not")
        names = self.ground_truth
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ValueError(f"ground_truth: {list(self.ground_truth)} must name distinct factors, at least one")
        return self


class ModelSettings(Strict):
    latent_dim: int = Field(10, ge=1, le=1024)


class ObjectiveSettings(Strict):
    capacity_steps: int = Field(100_000, ge=0, le=10**9, description="steps over which C(t) rises linearly to C_max")


class TrainingSettings(Strict):
    steps: int = Field(300_000, ge=1, le=10**9)
    batch_size: int = Field(64, ge=1, le=65536)
    lr: float = Field(1e-4, gt=0, allow_inf_nan=False)
    report_every: int = Field(100, ge=1, le=10**9, description="steps between reports to Tune and MLflow")
    checkpoint_every: int = Field(10_000, ge=1, le=10**9)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(
        False, description="bfloat16 autocast on GPU (less memory; slower for the reference model); ignored on CPU"
    )
    compile: bool = Field(
        False, description="torch.compile the training step's encoder and decoder (CUDA graphs on GPU)"
    )
    threads: int | None = Field(None, ge=1, le=1024, description="torch threads; default: the trial's CPUs")
    seed_offset: int = Field(
        0, ge=0, le=2**31, description="seed of repeat i is seed_offset + i (below 2**32, as numpy needs)"
    )


class EvalSettings(Strict):
    every: int = Field(50_000, ge=1, description="steps between evaluations; the last step always evaluates")
    preset: Literal["reference", "fast"] = "reference"
    metrics: tuple[Literal[METRIC_NAMES], ...] = DEFAULT_METRICS  # type: ignore[valid-type]
    overrides: dict[Literal[METRIC_NAMES], dict[str, int]] = {}  # type: ignore[valid-type]
    representation: Literal["mean", "sampled"] = "mean"
    dci_backend: Literal[DCI_BACKENDS] = Field(  # type: ignore[valid-type]
        "exact",
        description="DCI's classifier: `exact` (scikit-learn's trees built by compiled code, faster) or `sklearn`",
    )

    @model_validator(mode="after")
    def _known_override_keys(self) -> EvalSettings:
        largest = 10**7  # a sample size past it would take the trial's memory, not improve the score
        for metric, values in self.overrides.items():
            allowed = PRESETS[self.preset][metric]
            for key, value in values.items():
                if key not in allowed:
                    raise ValueError(f"overrides.{metric}.{key}: unknown size; known: {sorted(allowed)}")
                if not 1 <= value <= largest:
                    raise ValueError(f"overrides.{metric}.{key} = {value}: must be between 1 and {largest}")
        return self

    def sizes(self, metric: str) -> dict[str, int]:
        """The sample sizes one metric runs with: its preset, then the overrides."""
        return {**PRESETS[self.preset][metric], **self.overrides.get(metric, {})}


class TrialSettings(Strict):
    """Everything a trial reads besides its searched values (beta, capacity, seed index)."""

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    objective: ObjectiveSettings = ObjectiveSettings()
    training: TrainingSettings = TrainingSettings()
    eval: EvalSettings = EvalSettings()
