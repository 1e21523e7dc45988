"""What a trial reports to Tune: each model's values under its own keys, and the trial's seed means.

Each model's values sit under `trainables.trial.model_key(seed, key)` for
the tracking, which gives every model its own run and logs nothing else; a
failed model reports only its reason, under `model_key(seed, "error")`, in
every report after it failed. The plain keys (`loss`, `disent/mig`) are the
trial's own values, read by the searcher and the scheduler: the means over
the models that train on, so Optuna and ASHA decide on a configuration's
seed mean while its models train (for a trial of one model, its values).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from trainables.settings import OBJECTIVE_TERMS
from trainables.trial import MODEL_ERROR, MODELS_FAILED, model_key

# What every model reports at every report, whatever its objective (its own terms come beside them).
TRAINING_METRICS = ("loss", "recon", "kl", "active_latents")


def model_values(objective: str, latent_dim: int) -> int:
    """How many values one model's training report holds: the training metrics, the objective's own
    terms and the KL of each latent (`kl/<i>`); what the tracking store takes per report and model."""
    return len(TRAINING_METRICS) + len(OBJECTIVE_TERMS[objective]) + latent_dim


@dataclass
class TrialReport:
    """Means since the last report: per model that trains on, and the reasons of those that failed."""

    models: dict[int, dict[str, float]]
    failed: dict[int, str]
    images_per_sec: float  # the whole trial, every model's images

    def tune_metrics(self) -> dict[str, Any]:
        """The result dict of this report, before the trial adds its step and placement."""
        metrics: dict[str, Any] = {}
        keys: dict[str, None] = {}  # every model's keys, in order
        for seed, values in self.models.items():
            metrics.update({model_key(seed, key): value for key, value in values.items()})
            keys.update(dict.fromkeys(values))
        for seed, reason in self.failed.items():
            metrics[model_key(seed, MODEL_ERROR)] = reason
        for key in keys:
            metrics[key] = statistics.fmean(v[key] for v in self.models.values() if key in v)
        metrics["images_per_sec"] = self.images_per_sec
        metrics[MODELS_FAILED] = float(len(self.failed))
        return metrics
