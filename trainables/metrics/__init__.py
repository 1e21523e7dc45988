"""Disentanglement metrics of the 2019 large-scale study (Locatello et al.), in its reference definitions.

One module per metric, arrays in, floats out: every function takes numpy
arrays of codes and factor class indices (or a `represent` callable for the
metrics that draw their own factor vectors) and a `numpy.random.Generator`
where it draws, and returns a dict of named plain-float scores. No model code,
no file I/O.

Each evaluation metric's module exports its `SPEC` (`MetricSpec`): score
names, sample sizes, the shared samples it reads, and one calling convention
over `MetricInputs`. `SPECS` lists them in evaluation order; the settings,
the evaluation and the datasets read them from here. Importing the specs
loads numpy only: scikit-learn and scipy are imported where a metric runs.
"""

from trainables.metrics._common import MetricInputs, MetricSpec
from trainables.metrics.beta_vae import SPEC as _BETA_VAE
from trainables.metrics.beta_vae import beta_vae_score
from trainables.metrics.dci import SPEC as _DCI
from trainables.metrics.dci import dci
from trainables.metrics.downstream import SPEC as _DOWNSTREAM
from trainables.metrics.downstream import downstream_task
from trainables.metrics.factor_vae import SPEC as _FACTOR_VAE
from trainables.metrics.factor_vae import factor_vae_score
from trainables.metrics.mig import SPEC as _MIG
from trainables.metrics.mig import discrete_entropy, discrete_mutual_info, discretize, mig
from trainables.metrics.modularity import SPEC as _MODULARITY
from trainables.metrics.modularity import modularity_explicitness
from trainables.metrics.sap import SPEC as _SAP
from trainables.metrics.sap import sap, sap_continuous
from trainables.metrics.udr import udr_pair_score, udr_scores
from trainables.metrics.unsupervised import SPEC as _UNSUPERVISED
from trainables.metrics.unsupervised import unsupervised_scores

SPECS: tuple[MetricSpec, ...] = (
    _BETA_VAE, _FACTOR_VAE, _MIG, _DCI, _SAP, _MODULARITY, _UNSUPERVISED, _DOWNSTREAM
)
SPEC_BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in SPECS}

__all__ = [
    "SPECS",
    "SPEC_BY_NAME",
    "MetricInputs",
    "MetricSpec",
    "beta_vae_score",
    "dci",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize",
    "downstream_task",
    "factor_vae_score",
    "mig",
    "modularity_explicitness",
    "sap",
    "sap_continuous",
    "udr_pair_score",
    "udr_scores",
    "unsupervised_scores",
]
