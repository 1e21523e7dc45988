"""Disentanglement metrics of the 2019 large-scale study (Locatello et al.), in its reference definitions.

One module per metric, arrays in, floats out: every function takes numpy
arrays of codes and factor class indices (or a `represent` callable for the
metrics that draw their own factor vectors) and a `numpy.random.Generator`
where it draws, and returns a dict of named plain-float scores. No model code,
no file I/O.
"""

from trainables.metrics.beta_vae import beta_vae_score
from trainables.metrics.dci import dci
from trainables.metrics.factor_vae import factor_vae_score
from trainables.metrics.mig import discrete_entropy, discrete_mutual_info, discretize, mig
from trainables.metrics.modularity import modularity_explicitness
from trainables.metrics.sap import sap, sap_continuous
from trainables.metrics.udr import udr_pair_score, udr_scores
from trainables.metrics.unsupervised import unsupervised_scores

__all__ = [
    "beta_vae_score",
    "dci",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "factor_vae_score",
    "mig",
    "modularity_explicitness",
    "sap",
    "sap_continuous",
    "udr_pair_score",
    "udr_scores",
    "unsupervised_scores",
]
