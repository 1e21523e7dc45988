"""What a trial trains, read once from the config dict Ray Tune hands it.

Tune's config is an untyped dict: the configuration (`configuration`: the
objective's kind and its weights; `beta` and `capacity` in the trials of
earlier releases), the seeds the trial trains (a configuration's seeds together, as
`pack_seeds`; or one seed, as the repeat index that a grid or Optuna's
Repeater sets), and the fixed `settings`. Every reader (the trainable, the
tracking callback, progress lines, `sweeper status`) goes through
`TrialSpec.from_config`, so the keys and the seed rule live here only, and
every model is named by `ModelSpec.label`.

This module imports neither Ray nor torch: the analysis commands read trial
configs from Tune's plain JSON files without starting Ray.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Ray Tune's `ray.tune.search.repeater.TRIAL_INDEX` (a test pins the two together): importing it
# from Ray would load Ray Tune in commands that never run a trial.
TRIAL_INDEX = "__trial_index__"
PACK_SEEDS = "pack_seeds"  # the seeds a trial trains together as one stacked model
# A trial reports each model's values under `model/<seed>/<key>` (and their seed means under the
# plain keys, for the searcher and the scheduler); each model's checkpoint is a folder of its own.
MODEL_ERROR = "error"  # `model/<seed>/error`: why that model of a trial stopped
MODELS_FAILED = "models_failed"  # a trial's count of failed models, with the seed means
_MODEL_KEY = re.compile(r"^model/(?P<seed>\d+)/(?P<key>.+)$")


def seed_of(seed_offset: int, index: int) -> int:
    """The seed of a configuration's repeat `index`: the one seed rule."""
    return seed_offset + index


def repeat_index(seed_offset: int, seed: int) -> int:
    """Which repeat of its configuration a seed is (the inverse of `seed_of`)."""
    return seed - seed_offset


def model_key(seed: int, key: str) -> str:
    """The result key of one model's value in a trial's report."""
    return f"model/{seed}/{key}"


def split_model_key(key: str) -> tuple[int, str] | None:
    """(seed, key) of a `model_key`, or None for a key of the whole trial."""
    match = _MODEL_KEY.match(key)
    return (int(match["seed"]), match["key"]) if match else None


def model_folder(seed: int) -> str:
    """The sub-folder of a trial's checkpoint that holds one model's checkpoint."""
    return f"seed={seed}"


CONFIGURATION_KEY = "configuration"  # in a trial's config: {"objective": kind, "weights": {name: value}}


@dataclass(frozen=True)
class Configuration:
    """What the models of one configuration share: an objective and its weights (the seed aside).

    `weights` keep the order the sweep gave them, by the study's names
    (`beta`, `gamma`, `c_max`, `lambda_od`; see `trainables.objectives`).
    """

    objective: str
    weights: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, objective: str, weights: Mapping[str, float]) -> Configuration:
        return cls(objective, tuple((name, float(value)) for name, value in weights.items()))

    def to_config(self) -> dict[str, Any]:
        """As a trial's config holds it (`CONFIGURATION_KEY`)."""
        return {"objective": self.objective, "weights": dict(self.weights)}

    @classmethod
    def from_beta_and_capacity(cls, beta: float, capacity: float) -> Configuration:
        """A configuration of earlier releases, which trained recon + beta * |KL - C(t)|: the beta-VAE
        for C_max = 0 (KL >= 0), else the AnnealedVAE with gamma = beta."""
        if float(capacity) == 0:
            return cls.of("beta_vae", {"beta": beta})
        return cls.of("annealed_vae", {"gamma": beta, "c_max": capacity})

    def weight(self, name: str) -> float | None:
        return dict(self.weights).get(name)

    def label(self) -> str:
        """The one name of a configuration: `beta_vae beta=4`, `annealed_vae gamma=1000 c_max=25`."""
        return " ".join([self.objective, *(f"{name}={value:.4g}" for name, value in self.weights)])


@dataclass(frozen=True)
class ModelSpec:
    """One model: its configuration and its seed."""

    configuration: Configuration
    seed: int

    def label(self) -> str:
        """The one name of a model, in run names, progress lines and reports."""
        return f"{self.configuration.label()} seed={self.seed}"

    def file_stem(self) -> str:
        """The label as a file or folder name."""
        return safe_name(self.label().replace(" ", "_"))


@dataclass(frozen=True)
class TrialSpec:
    """A Tune trial: the seeds of one configuration, trained as one stacked model (one seed or several)."""

    configuration: Configuration
    seeds: tuple[int, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrialSpec:
        if CONFIGURATION_KEY in config:
            given = config[CONFIGURATION_KEY]
            configuration = Configuration.of(str(given["objective"]), given["weights"])
        else:
            configuration = Configuration.from_beta_and_capacity(float(config["beta"]), float(config["capacity"]))
        if PACK_SEEDS in config:
            return cls(configuration, tuple(int(s) for s in config[PACK_SEEDS]))
        settings = config["settings"]
        offset = settings["training"]["seed_offset"] if isinstance(settings, Mapping) else settings.training.seed_offset
        return cls(configuration, (seed_of(int(offset), int(config.get(TRIAL_INDEX, 0))),))

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(self.configuration, seed) for seed in self.seeds]

    def label(self) -> str:
        """A model's label for a trial of one seed; the configuration and its seeds for several."""
        if len(self.seeds) == 1:
            return self.models()[0].label()
        return f"{self.configuration.label()} seeds={self.seed_span()}"

    def seed_span(self) -> str:
        """`3`, `0-4` for a contiguous pack, else the seeds listed."""
        seeds = self.seeds
        contiguous = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
        return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else ",".join(map(str, seeds))


_UNSAFE = re.compile(r"[^A-Za-z0-9=._-]+")


def safe_name(text: str) -> str:
    """`text` as one file name: anything but letters, digits and `=._-` becomes `_`."""
    return _UNSAFE.sub("_", text).strip("._") or "_"
