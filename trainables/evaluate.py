"""A model's scores on the selected disentanglement metrics, each observation encoded once.

The metrics (`trainables.metrics`) are pure numpy: they see a `represent`
callable or arrays of codes, never the model. This module is the other side of
that boundary. It owns the model, the device and the encoding, and hands the
metrics numpy arrays only.

Why an evaluation is cheap:
- An observation is a function of its factors and the factor grid is finite
  (737280 cells for dSprites), so the codes of one evaluation live in a cache
  over the grid: the posterior mean and log-variance of each cell, filled
  lazily for the cells a metric asks for, each cell rendered and encoded once
  (rendered 4096 at a time; the encoder runs on slices of 4096 on a GPU and
  of 64 on a CPU, where larger slices cost more per image). At the
  reference sizes the BetaVAE and FactorVAE scores
  ask for about 2.9 million observations; they touch about 0.72 million
  distinct cells.
- MIG, DCI, SAP, modularity/explicitness and the unsupervised scores share one
  train sample and one test sample of factors; each metric reads the first
  `num_train` / `num_test` rows it is configured for.
The cache lives for one call: the weights change between evaluations.
A dataset whose observations are not a function of their factors (colour or
noise per observation, hidden factors: `dataset.deterministic` is False) gets
no cache: every observation a metric asks for is rendered and encoded, with
the randomness drawn from the evaluation's own "observations" stream.
A dataset whose factor grid is incomplete is refused for the metrics that
need every cell (BetaVAE, FactorVAE), with a message saying why.

Codes are IEEE float32 on every device, whatever `training.amp` and
`training.tf32` say: scores are compared with the CPU's and the reference's,
and a bfloat16 encoder (8 bits of mantissa) turns 10,000 distinct codes into
about 1,700 values, which moves MIG's histograms and gives DCI's trees ties
they would not meet. Exact arithmetic costs little on a GPU: a reference
evaluation encodes about 0.72 million observations at 11.5 MFLOP each (8.3
TFLOP, seconds at most at a card's float32 rate without TF32), while the
metrics' own computation takes about 17 s on the CPU (docs/benchmarks.md).
Each forward runs one of a few fixed sizes (a power of two, padded with blank
images whose codes are dropped): with `cudnn.benchmark` on, cuDNN times its
algorithms once per input size, so a last slice of any other size would be
autotuned anew.

The representation is the posterior mean, or with `representation="sampled"`
a draw mu + sigma * eps. The cache keeps mu and log-variance, not draws, and
every lookup draws fresh eps, so an observation that is asked for twice gets
two independent draws, as when the reference encodes it twice.

Random numbers: one independent generator per use (the shared train sample,
the shared test sample, the sampling noise, and each metric that draws), all
spawned from the caller's generator. The result is a function of that
generator, and a metric's scores do not depend on which other metrics run
with it (for the mean representation, and as long as the encoder's kernels
round a row the same whatever the batch: true of the CPU kernels for batches
of MIN_FORWARD_ROWS or more, which every forward is padded to; GPU kernels
are chosen by batch size and may differ in the last bit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from trainables.data import unsupported_metrics
from trainables.metrics import SPEC_BY_NAME, MetricInputs
from trainables.metrics._common import SampleFactors
from trainables.model import BetaVAE
from trainables.runtime import exact_float32
from trainables.settings import METRIC_NAMES, EvalSettings

Represent = Callable[[np.ndarray], np.ndarray]

RENDER_BATCH = 4096  # observations rendered and encoded per step
GPU_ENCODE_CHUNK = RENDER_BATCH  # encoder forward size on a GPU: a whole render batch in one forward
CPU_ENCODE_CHUNK = 64  # encoder forward size on CPU: per image, 16 to 64 cost the same and larger costs more
# Matrix products over very few rows take other kernels whose rounding differs in the last bit (on
# the CPU: 1 to 11 rows, save 4 and 8); padding every forward to at least this many rows keeps an
# observation's code independent of how many others shared its batch.
MIN_FORWARD_ROWS = 16
MAX_GRID_CELLS = 1 << 26  # a bigger factor grid would not fit a dense cache

# One generator per use, in this order; new uses go at the end, so the others keep their numbers.
STREAMS = ("train", "test", "noise", "beta_vae", "factor_vae", "dci", "observations", "downstream")


def random_streams(rng: np.random.Generator) -> dict[str, np.random.Generator]:
    """Independent generators for every use an evaluation has, spawned from `rng` in a fixed order."""
    return dict(zip(STREAMS, rng.spawn(len(STREAMS))))


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def forward_rows(rows: int, chunk: int) -> int:
    """How many rows the encoder's forward runs for a slice of `rows` <= `chunk` observations.

    `chunk` itself for a full slice; for a shorter one the next power of two,
    at least MIN_FORWARD_ROWS and at most `chunk`. An evaluation's forwards
    then take a handful of sizes, each autotuned once per process, and
    padding at most doubles the work of a last slice.
    """
    return max(MIN_FORWARD_ROWS, min(chunk, 1 << (rows - 1).bit_length()))


def encode_observations(
    model: BetaVAE, observations: torch.Tensor, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and log-variance of a batch of observations, as float32 numpy arrays.

    Runs without autograd, in IEEE float32 (no autocast, even the caller's,
    and no TF32). The caller puts the model in eval mode. `chunk` bounds the
    encoder's forward size (default GPU_ENCODE_CHUNK on a GPU, CPU_ENCODE_CHUNK
    on a CPU); each slice is padded with blank images to `forward_rows`, and
    their codes are dropped.
    """
    device = model_device(model)
    if chunk is None:
        chunk = GPU_ENCODE_CHUNK if device.type == "cuda" else CPU_ENCODE_CHUNK
    chunk = max(int(chunk), 1)
    mus, logvars = [], []
    with torch.inference_mode(), torch.autocast(device.type, enabled=False), exact_float32():
        x = observations.to(device)
        for start in range(0, x.shape[0], chunk):
            batch = x[start : start + chunk]
            rows = batch.shape[0]
            padding = forward_rows(rows, chunk) - rows
            if padding:
                batch = torch.cat([batch, batch.new_zeros((padding, *batch.shape[1:]))])
            mu, logvar = model.encoder(batch)
            mus.append(mu[:rows])
            logvars.append(logvar[:rows])
    return torch.cat(mus).cpu().numpy(), torch.cat(logvars).cpu().numpy()


class CodeCache:
    """Posterior mean and log-variance of every cell of the factor grid asked for so far.

    Dense arrays of prod(factor_sizes) x D, keyed by `dataset.flat_index`, with
    a mask of the filled cells (about 59 MB for dSprites at D = 10; untouched
    pages are never allocated). Valid for one set of weights only.

    For a dataset that is not `deterministic` nothing is cached: every lookup
    renders its observations (randomness from `generator`) and encodes them.
    """

    def __init__(
        self,
        model: BetaVAE,
        dataset,
        render_batch: int = RENDER_BATCH,
        chunk: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.model = model
        self.dataset = dataset
        self.factor_sizes = tuple(int(s) for s in dataset.factor_sizes)
        self.render_batch = int(render_batch)
        self.chunk = chunk
        self.generator = generator
        self.encoded = 0  # observations encoded (distinct ones, when cached)
        self.encode_seconds = 0.0  # time spent rendering and encoding them
        self.cached = bool(getattr(dataset, "deterministic", True))
        if not self.cached:
            return
        cells = math.prod(self.factor_sizes)
        if cells > MAX_GRID_CELLS:
            raise ValueError(f"factor grid of {cells} cells is too large for a dense code cache")
        latent_dim = int(model.latent_dim)
        self.mu = np.empty((cells, latent_dim), dtype=np.float32)
        self.logvar = np.empty((cells, latent_dim), dtype=np.float32)
        self.filled = np.zeros(cells, dtype=bool)

    def lookup(self, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and log-variance (n, D) for an int (n, K) array of factor vectors."""
        if not self.cached:
            return self.encode_each(np.asarray(factors))
        index = self.dataset.flat_index(np.asarray(factors))
        self.fill(index)
        return self.mu[index], self.logvar[index]

    def fill(self, index: np.ndarray) -> None:
        """Encode the cells among `index` that are not cached yet, each once."""
        start = time.perf_counter()
        wanted = np.zeros_like(self.filled)
        wanted[index] = True
        wanted &= ~self.filled
        missing = np.flatnonzero(wanted)
        for begin in range(0, missing.size, self.render_batch):
            cells = missing[begin : begin + self.render_batch]
            factors = np.stack(np.unravel_index(cells, self.factor_sizes), axis=1)
            mu, logvar = encode_observations(self.model, self.dataset.observations(factors), self.chunk)
            self.mu[cells], self.logvar[cells] = mu, logvar
            self.filled[cells] = True
        self.encoded += int(missing.size)
        self.encode_seconds += time.perf_counter() - start

    def encode_each(self, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Render and encode every row of `factors`, repeats included: each is a fresh observation."""
        start = time.perf_counter()
        mus, logvars = [], []
        for begin in range(0, len(factors), self.render_batch):
            batch = self.dataset.observations(factors[begin : begin + self.render_batch], self.generator)
            mu, logvar = encode_observations(self.model, batch, self.chunk)
            mus.append(mu)
            logvars.append(logvar)
        self.encoded += len(factors)
        self.encode_seconds += time.perf_counter() - start
        if not mus:
            empty = np.empty((0, int(self.model.latent_dim)), dtype=np.float32)
            return empty, empty.copy()
        return np.concatenate(mus), np.concatenate(logvars)

    def representation(self, kind: str, rng: np.random.Generator | None = None) -> Represent:
        """The `represent` callable the metrics use: the mean, or mu + sigma * eps with fresh eps from rng."""
        if kind == "mean":
            return lambda factors: self.lookup(factors)[0]
        if kind != "sampled":
            raise ValueError(f"unknown representation {kind!r}; known: 'mean', 'sampled'")
        if rng is None:
            raise ValueError("the sampled representation needs a generator for its noise")

        def sampled(factors: np.ndarray) -> np.ndarray:
            mu, logvar = self.lookup(factors)
            return mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape, dtype=np.float32)

        return sampled


@dataclass
class Evaluation:
    """Scores of one evaluation, with where its time went."""

    scores: dict[str, float] = field(default_factory=dict)  # score name (no prefix) -> value
    metric_seconds: dict[str, float] = field(default_factory=dict)  # per metric, encoding excluded
    metric_encode_seconds: dict[str, float] = field(default_factory=dict)  # encoding done while it ran
    encode_seconds: float = 0.0
    encoded: int = 0
    seconds: float = 0.0

    def report(self) -> dict[str, float]:
        out = {f"disent/{name}": value for name, value in self.scores.items()}
        out["eval/seconds"] = self.seconds
        out["eval/encoded"] = float(self.encoded)
        return out


class SharedSample:
    """One split of factors shared by the code-based metrics, encoded on first use."""

    def __init__(self, factors: np.ndarray, represent: Represent) -> None:
        self.factors = np.asarray(factors)
        self._represent = represent
        self._codes: np.ndarray | None = None

    def first(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._codes is None:
            self._codes = self._represent(self.factors)
        return self._codes[:n], self.factors[:n]


def _sample(dataset, n: int, rng: np.random.Generator, represent: Represent) -> SharedSample | None:
    return SharedSample(dataset.sample_factors(n, rng), represent) if n > 0 else None


def run_metric(
    name: str,
    sizes: dict[str, int],
    represent: Represent,
    factor_sizes: tuple[int, ...],
    streams: dict[str, np.random.Generator],
    train: SharedSample | None,
    test: SharedSample | None,
    n_jobs: int | None,
    dci_backend: str = "exact",
    sample_factors: SampleFactors | None = None,
) -> dict[str, float]:
    """One metric's scores, from the evaluation's representation, streams and shared samples
    (and the dataset's sampler, for a metric that draws factors of its own on any grid)."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")
    inputs = MetricInputs(
        represent=represent,
        factor_sizes=factor_sizes,
        rng=streams.get(name),
        train=None if train is None else train.first,
        test=None if test is None else test.first,
        n_jobs=n_jobs,
        dci_backend=dci_backend,
        sample_factors=sample_factors,
    )
    return spec.evaluate(inputs, sizes)


def run_evaluation(
    model: BetaVAE,
    dataset,
    settings: EvalSettings,
    rng: np.random.Generator,
    n_jobs: int | None = None,
    cache: CodeCache | None = None,
) -> Evaluation:
    """Run the selected metrics on one shared code cache; see `evaluate`.

    n_jobs: parallel fits for DCI and SAP; default the torch thread count, which
    is the trial's CPU share inside a Ray worker.
    cache: a cache already filled for these very weights (benchmarks re-time
    the metrics with it); by default a fresh one.
    """
    start = time.perf_counter()
    selected = [name for name in METRIC_NAMES if name in settings.metrics]
    streams = random_streams(rng)
    n_jobs = torch.get_num_threads() if n_jobs is None else n_jobs
    factor_sizes = tuple(int(s) for s in dataset.factor_sizes)
    problem = unsupported_metrics(dataset, selected)
    if problem:
        raise ValueError(problem)

    was_training = model.training
    model.eval()
    try:
        if cache is None:
            device = getattr(dataset, "device", torch.device("cpu"))
            seed = int(streams["observations"].integers(2**63))
            cache = CodeCache(model, dataset, generator=torch.Generator(device).manual_seed(seed))
        encoded_before = cache.encoded
        represent = cache.representation(settings.representation, streams["noise"])
        shared = [name for name in selected if "train" in SPEC_BY_NAME[name].splits]
        split = [name for name in selected if "test" in SPEC_BY_NAME[name].splits]
        num_train = max((settings.sizes(name)["num_train"] for name in shared), default=0)
        num_test = max((settings.sizes(name)["num_test"] for name in split), default=0)
        train = _sample(dataset, num_train, streams["train"], represent)
        test = _sample(dataset, num_test, streams["test"], represent)

        result = Evaluation()
        for name in selected:
            began, encode_before = time.perf_counter(), cache.encode_seconds
            sizes = settings.sizes(name)
            scores = run_metric(
                name, sizes, represent, factor_sizes, streams, train, test, n_jobs, settings.dci_backend,
                dataset.sample_factors,
            )
            result.scores.update({key: float(value) for key, value in scores.items()})
            encode_seconds = cache.encode_seconds - encode_before
            result.metric_seconds[name] = time.perf_counter() - began - encode_seconds
            result.metric_encode_seconds[name] = encode_seconds
    finally:
        model.train(was_training)
    result.encode_seconds = sum(result.metric_encode_seconds.values())
    result.encoded = cache.encoded - encoded_before
    result.seconds = time.perf_counter() - start
    return result


def evaluate(model: BetaVAE, dataset, settings: EvalSettings, rng: np.random.Generator) -> dict[str, float]:
    """Scores of the metrics in `settings.metrics`, for a report to Tune and MLflow.

    Keys: `disent/<score>` for every score of every selected metric (e.g.
    `disent/mig`, `disent/dci_disentanglement`, `disent/beta_vae_eval`),
    `eval/seconds` (wall time) and `eval/encoded` (distinct observations
    encoded). The model's training mode is restored afterwards. The result is
    a function of the weights, the settings and `rng`.
    """
    return run_evaluation(model, dataset, settings, rng).report()
