"""FactorVAE score (Kim & Mnih 2018), as disentanglement_lib defines it.

Latents are first scaled by their global variance (ddof=1, from the codes of
`num_variance_estimate` sampled factor vectors); latents whose standard
deviation is below `prune_threshold` are pruned. One vote: pick a factor k
uniformly, draw a batch of factor vectors with factor k set to the first one's
value, encode, and vote for the active latent with the smallest local variance
(ddof=1) relative to its global variance. A majority-vote classifier maps each
latent to the factor it received most train votes for; accuracy is the share
of votes it gets right.

Why a split's votes are drawn in one array: the reference encodes one batch
per vote in a Python loop. Here all batches of a split are drawn together,
encoded with a single `represent` call, and the local variances come from one
`var` over a (votes, batch, D) array. The draws have the reference's
distribution, in a different order, so scores agree in distribution, not draw
for draw.

Deliberate differences from the reference:
- `factor_vae_active_dims` is the number of active latents; the reference's
  `num_active_dims` is the length of its boolean mask, i.e. always D.
- A latent with zero global variance is never active, even with
  `prune_threshold=0`, where the reference would divide by zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from trainables.factors import sample_factors
from trainables.metrics._common import (
    MetricInputs,
    MetricSpec,
    Represent,
    encode,
    require_at_least,
    varied_factor_sizes,
)

METRIC = "FactorVAE score"
SCORES = ("factor_vae_train", "factor_vae_eval", "factor_vae_active_dims")


def factor_vae_score(
    represent: Represent,
    factor_sizes: Sequence[int],
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
) -> dict[str, float]:
    """Train and eval accuracy of the majority-vote classifier, and the number of active latents."""
    sizes = varied_factor_sizes(factor_sizes, METRIC)
    batch_size = require_at_least(batch_size, 2, METRIC, "batch_size")
    num_train = require_at_least(num_train, 1, METRIC, "num_train")
    num_eval = require_at_least(num_eval, 1, METRIC, "num_eval")
    num_variance_estimate = require_at_least(num_variance_estimate, 2, METRIC, "num_variance_estimate")
    if not prune_threshold >= 0:
        raise ValueError(f"{METRIC}: prune_threshold must be >= 0, got {prune_threshold}")

    codes = encode(represent, sample_factors(sizes, num_variance_estimate, rng), METRIC)
    global_variances = np.var(codes, axis=0, ddof=1)
    active = (np.sqrt(global_variances) >= prune_threshold) & (global_variances > 0)
    if not active.any():
        return dict.fromkeys(SCORES, 0.0)

    train_votes = _votes(represent, sizes, rng, batch_size, num_train, global_variances, active)
    classifier = np.argmax(train_votes, axis=1)
    eval_votes = _votes(represent, sizes, rng, batch_size, num_eval, global_variances, active)
    scores = (_accuracy(train_votes, classifier), _accuracy(eval_votes, classifier), float(np.count_nonzero(active)))
    return dict(zip(SCORES, scores))


def _votes(
    represent: Represent,
    sizes: tuple[int, ...],
    rng: np.random.Generator,
    batch_size: int,
    num_votes: int,
    global_variances: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """(D, K) counts of votes (latent d*, fixed factor k), from one `represent` call."""
    num_factors = len(sizes)
    fixed = rng.integers(num_factors, size=num_votes)
    factors = sample_factors(sizes, num_votes * batch_size, rng).reshape(num_votes, batch_size, num_factors)
    votes = np.arange(num_votes)
    factors[votes, :, fixed] = factors[votes, 0, fixed][:, None]
    codes = encode(represent, factors.reshape(-1, num_factors), METRIC)
    local_variances = np.var(codes.reshape(num_votes, batch_size, -1), axis=1, ddof=1)
    ratios = local_variances[:, active] / global_variances[active]
    winners = np.flatnonzero(active)[np.argmin(ratios, axis=1)]
    counts = np.zeros((len(global_variances), num_factors), dtype=np.int64)
    np.add.at(counts, (winners, fixed), 1)
    return counts


def _accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    """Share of the votes whose factor is the one the classifier assigns to their latent."""
    return float(votes[np.arange(votes.shape[0]), classifier].sum() / votes.sum())


def _evaluate(inputs: MetricInputs, sizes: Mapping[str, int]) -> dict[str, float]:
    return factor_vae_score(inputs.represent, inputs.factor_sizes, inputs.generator(METRIC), **sizes)


SPEC = MetricSpec(
    name="factor_vae",
    scores=SCORES,
    sizes={"batch_size": 64, "num_train": 10000, "num_eval": 5000, "num_variance_estimate": 10000},
    evaluate=_evaluate,
    needs_full_grid=True,
)
