"""What one trial needs to know, validated: data, model, objective, training, evaluation.

These models live on the trainable side because trials run inside Ray workers
that import only `trainables`; the sweep config (`sweeper.config`) embeds them
unchanged, so a config file and a trial read the same schema. Unknown keys are
errors everywhere: a typo must not silently fall back to a default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

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


def _not_a_boolean(value: object) -> object:
    # YAML reads `true`, `yes` and `on` as booleans, which pydantic would take as the number 1: a flag
    # given to the wrong key (`--set training.steps=true`) must not become one training step.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


# Every integer and float setting, here and in the sweep config, is one of these.
Integer = Annotated[int, BeforeValidator(_not_a_boolean)]
Real = Annotated[float, BeforeValidator(_not_a_boolean)]


FILE_DATASETS: tuple[str, ...] = ("dsprites_file", "npz", "shapes3d", "mpi3d", "smallnorb", "cars3d")  # read from `path`
MPI3D_SUBSETS: tuple[str, ...] = ("toy", "realistic", "real", "real_complex")


class DataSettings(Strict):
    """Which ground-truth dataset a trial trains and is scored on (see `trainables.data`).

    name: `dsprites` (procedural, no file), `dsprites_file` (the original
    dSprites .npz, or a smaller grid in its format), `npz` (your own images,
    factor classes and factor names), or one of the study's other datasets
    from the files their authors publish: `shapes3d` (3dshapes.h5),
    `mpi3d` (an npz; `subset` says which), `smallnorb` (the folder of its
    six binary matrix files), `cars3d` (the folder of its .mat files).
    """

    name: Literal["dsprites", "dsprites_file", "npz", "shapes3d", "mpi3d", "smallnorb", "cars3d"] = "dsprites"
    path: str | None = Field(
        None, description="the dataset file (for smallnorb and cars3d, its folder); every name but dsprites reads one"
    )
    subset: Literal[MPI3D_SUBSETS] | None = Field(  # type: ignore[valid-type]
        None, description="mpi3d only: which MPI3D file `path` is (its factor grid): toy, realistic, real, real_complex"
    )
    variant: Literal["none", "color", "noisy", "scream"] = Field(
        "none",
        description="color / noisy / scream dSprites made from single-channel images, as in the reference study",
    )
    background: str | None = Field(None, description="the scream variant's background image (the reference's: The Scream)")
    ground_truth: tuple[str, ...] | None = Field(
        None, description="the factors the metrics score (default all); the others vary at random"
    )

    @model_validator(mode="after")
    def _path_when_needed(self) -> DataSettings:
        if self.name in FILE_DATASETS and not self.path:
            raise ValueError(f"path: required when name is {self.name!r}")
        if self.name not in FILE_DATASETS and self.path is not None:
            raise ValueError(f"path: only {', '.join(FILE_DATASETS)} read a file; {self.name!r} does not")
        if (self.name == "mpi3d") != (self.subset is not None):
            raise ValueError(
                f"subset: required when name is 'mpi3d' (one of {', '.join(MPI3D_SUBSETS)})"
                if self.name == "mpi3d"
                else f"subset: only mpi3d has subsets; {self.name!r} does not"
            )
        if (self.variant == "scream") != bool(self.background):
            raise ValueError(
                "background: required when variant is 'scream' (an image file, such as the reference's The Scream)"
                if self.variant == "scream"
                else f"background: only the scream variant uses a background image; variant is {self.variant!r}"
            )
        names = self.ground_truth
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ValueError(f"ground_truth: {list(self.ground_truth)} must name distinct factors, at least one")
        return self


class ModelSettings(Strict):
    latent_dim: Integer = Field(10, ge=1, le=1024)


# The study's objectives (trainables.objectives) and the weights each is searched by, named as the study
# names them: the one list of them, read by the objectives themselves and by the sweep config.
OBJECTIVE_WEIGHTS: dict[str, tuple[str, ...]] = {
    "beta_vae": ("beta",),
    "annealed_vae": ("gamma", "c_max"),
    "factor_vae": ("gamma",),
    "dip_vae_i": ("lambda_od",),
    "dip_vae_ii": ("lambda_od",),
    "beta_tcvae": ("beta",),
}
# Each objective's own terms (`Terms.extra`), which every report carries beside the training metrics.
OBJECTIVE_TERMS: dict[str, tuple[str, ...]] = {
    "beta_vae": (),
    "annealed_vae": ("capacity",),
    "factor_vae": ("tc", "discriminator_loss"),
    "dip_vae_i": ("dip_offdiagonal", "dip_diagonal"),
    "dip_vae_ii": ("dip_offdiagonal", "dip_diagonal"),
    "beta_tcvae": ("tc",),
}


class ObjectiveSettings(Strict):
    capacity_steps: Integer = Field(
        100_000, ge=0, le=10**9, description="annealed_vae: steps over which C(t) rises linearly to c_max"
    )


class TrainingSettings(Strict):
    steps: Integer = Field(300_000, ge=1, le=10**9)
    batch_size: Integer = Field(64, ge=1, le=65536)
    lr: Real = Field(1e-4, gt=0, allow_inf_nan=False)
    report_every: Integer = Field(100, ge=1, le=10**9, description="steps between reports to Tune and MLflow")
    checkpoint_every: Integer = Field(10_000, ge=1, le=10**9)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(
        False, description="bfloat16 autocast on GPU (less memory; slower for the reference model); ignored on CPU"
    )
    compile: bool = Field(
        False, description="torch.compile the training step's encoder and decoder (CUDA graphs on GPU)"
    )
    tf32: Literal["off", "convolutions", "all"] = Field(
        "convolutions",
        description="which float32 operations a GPU (Ampere or later) runs in TF32, 10 bits of mantissa: none, "
        "the convolutions (PyTorch's default), or the matrix products too; no effect on a CPU",
    )
    threads: Integer | None = Field(None, ge=1, le=1024, description="torch threads; default: the trial's CPUs")
    seed_offset: Integer = Field(
        0, ge=0, le=2**31, description="seed of repeat i is seed_offset + i (below 2**32, as numpy needs)"
    )


class EvalSettings(Strict):
    every: Integer = Field(50_000, ge=1, description="steps between evaluations; the last step always evaluates")
    preset: Literal["reference", "fast"] = "reference"
    metrics: tuple[Literal[METRIC_NAMES], ...] = DEFAULT_METRICS  # type: ignore[valid-type]
    overrides: dict[Literal[METRIC_NAMES], dict[str, Integer]] = {}  # type: ignore[valid-type]
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
