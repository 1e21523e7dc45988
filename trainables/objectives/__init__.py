"""The study's six objectives (disentanglement_lib `methods/unsupervised/vae.py`), for S >= 1 stacked models.

One module per objective, `base` for what they share, `discriminator` for
FactorVAE's, `registry` for kinds, weights and the study's grid. A trainer
uses every objective the same way, one step at a time:

    objective = make_objective(kind, weights, seeds, latent_dim, generators)
    ...draw the batch and the noise from each model's generator, then the forward...
    terms = objective.terms(images, logits, mu, logvar, z, step)
    terms.loss.sum().backward()  # each slice's gradient is its own model's
    ...zero the failed models' gradient slices, the VAE's optimizer step...
    objective.update(terms)  # FactorVAE's discriminator step; nothing for the others

and, when models fail, `objective.freeze(failed indices)`; per model
checkpoint state through `model_state(i)` / `load_model_states(states)`.
"""

from trainables.objectives.base import Objective, Terms, capacity_at
from trainables.objectives.registry import OBJECTIVES, STUDY_GRID, WEIGHTS, make_objective

__all__ = ["OBJECTIVES", "STUDY_GRID", "WEIGHTS", "Objective", "Terms", "capacity_at", "make_objective"]
