"""Evaluation: every selected score, each observation encoded once, exact cached codes, sampled codes.

Most tests run on a coarse sub-grid of dSprites (2 x 3 x 3 x 3 x 3 factor
values): the classifiers of DCI and SAP fit one model per class, so few classes
keep the whole file fast, while observations are still real dSprites renders.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.data import ProceduralDSprites
from trainables.evaluate import (
    CodeCache,
    encode_observations,
    evaluate,
    forward_rows,
    random_streams,
    run_evaluation,
    run_metric,
)
from trainables.factors import flat_index, sample_factors
from trainables.model import BetaVAE
from trainables.runtime import set_tf32
from trainables.settings import DEFAULT_METRICS, EvalSettings
from trainables.settings import METRIC_OUTPUTS as SCORES

SMALL = {
    "beta_vae": {"batch_size": 8, "num_train": 60, "num_eval": 30},
    "factor_vae": {"batch_size": 8, "num_train": 60, "num_eval": 30, "num_variance_estimate": 200},
    "mig": {"num_train": 200},
    "dci": {"num_train": 200, "num_test": 100},
    "sap": {"num_train": 200, "num_test": 100},
    "modularity": {"num_train": 150, "num_test": 80},
    "unsupervised": {"num_train": 200},
    "downstream": {"num_train": 100, "num_test": 80},
}


class CoarseDSprites:
    """dSprites on a coarse sub-grid of its factors, recording every flat index asked for."""

    factor_sizes = (2, 3, 3, 3, 3)
    _stride = np.array([1, 2, 13, 15, 15])  # class c here is class c * stride in dSprites

    def __init__(self) -> None:
        self.full = ProceduralDSprites()
        self.device = self.full.device
        self.requested: list[np.ndarray] = []

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return sample_factors(self.factor_sizes, n, rng)

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        return self.full.observations(np.asarray(factors) * self._stride)

    def flat_index(self, factors: np.ndarray) -> np.ndarray:
        index = flat_index(factors, self.factor_sizes)
        self.requested.append(index)
        return index


def spread_model(latent_dim: int = 4, seed: int = 0) -> BetaVAE:
    """An untrained model whose mean codes vary as a trained model's do (random init gives std ~1e-3)."""
    torch.manual_seed(seed)
    model = BetaVAE(latent_dim)
    with torch.no_grad():
        model.encoder.mean.weight.mul_(1000.0)
    return model


def settings(**kwargs) -> EvalSettings:
    return EvalSettings(preset="fast", overrides=SMALL, **kwargs)


@pytest.fixture(scope="module")
def full_run() -> dict[str, float]:
    return evaluate(spread_model(), CoarseDSprites(), settings(), np.random.default_rng(7))


def test_every_default_metric_reports_every_score(full_run):
    expected = {f"disent/{score}" for name in DEFAULT_METRICS for score in SCORES[name]}
    assert set(full_run) == expected | {"eval/seconds", "eval/encoded"}
    assert "downstream" not in DEFAULT_METRICS  # asked for by name: its regressions would dominate every evaluation


def test_downstream_runs_when_named_without_changing_the_other_scores(full_run):
    """It reports the train sizes up to its num_train, from its own generator and the dataset's sampler."""
    chosen = ("mig", "downstream")
    run = evaluate(spread_model(), CoarseDSprites(), settings(metrics=chosen), np.random.default_rng(7))
    downstream = {key for key in run if key.startswith("disent/downstream_")}
    assert downstream == {
        f"disent/downstream_{p}_{kind}_{n}" for p in ("logreg", "gbt") for kind in ("accuracy", "min_accuracy")
        for n in (10, 100)
    }
    assert all(0.0 <= run[key] <= 1.0 for key in downstream)
    assert run["disent/mig"] == full_run["disent/mig"]


def test_scores_are_finite_plain_floats(full_run):
    for key, value in full_run.items():
        assert type(value) is float, key
        assert math.isfinite(value), key
    assert full_run["disent/factor_vae_active_dims"] > 0  # the votes really ran
    assert 0 < full_run["eval/encoded"] <= math.prod(CoarseDSprites.factor_sizes)


def test_same_generator_seed_gives_the_same_scores(full_run):
    again = evaluate(spread_model(), CoarseDSprites(), settings(), np.random.default_rng(7))
    drop = {"eval/seconds"}
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in full_run.items() if k not in drop}


def test_only_selected_metrics_run_and_keep_their_scores(full_run):
    subset = evaluate(spread_model(), CoarseDSprites(), settings(metrics=("mig", "beta_vae")), np.random.default_rng(7))
    expected = {f"disent/{s}" for s in SCORES["mig"] + SCORES["beta_vae"]} | {"eval/seconds", "eval/encoded"}
    assert set(subset) == expected
    # Each metric has its own generator: running fewer metrics does not change the ones that run.
    for key in expected - {"eval/seconds", "eval/encoded"}:
        assert subset[key] == full_run[key], key


def test_runs_on_the_full_dsprites_grid():
    chosen = ("beta_vae", "factor_vae", "mig", "unsupervised")  # the classifier metrics are slow on 40 classes
    report = evaluate(spread_model(), ProceduralDSprites(), settings(metrics=chosen), np.random.default_rng(0))
    assert set(report) == {f"disent/{s}" for name in chosen for s in SCORES[name]} | {"eval/seconds", "eval/encoded"}
    assert all(math.isfinite(v) for v in report.values())
    requested = 2 * 8 * (60 + 30) + 200 + 8 * (60 + 30) + 200
    assert 0 < report["eval/encoded"] <= requested


def test_no_metric_selected_reports_only_timing():
    model = spread_model()
    report = evaluate(model, CoarseDSprites(), settings(metrics=()), np.random.default_rng(0))
    assert set(report) == {"eval/seconds", "eval/encoded"}
    assert report["eval/encoded"] == 0.0


def test_each_distinct_observation_is_encoded_once():
    model, dataset = spread_model(), CoarseDSprites()
    rows = []
    # Rows the encoder saw, blank padding rows aside (a dSprites image is never blank).
    hook = model.encoder.register_forward_hook(
        lambda module, args, out: rows.append(int((args[0].flatten(1).amax(dim=1) > 0).sum()))
    )
    try:
        report = evaluate(
            model,
            dataset,
            settings(metrics=("beta_vae", "factor_vae", "mig", "unsupervised")),
            np.random.default_rng(1),
        )
    finally:
        hook.remove()
    requested = np.concatenate(dataset.requested)
    distinct = np.unique(requested).size
    assert report["eval/encoded"] == sum(rows) == distinct
    assert requested.size > 10 * distinct  # the metrics asked for many repeats; none was encoded twice


def test_shared_samples_are_drawn_once_and_prefixes_are_used():
    """MIG reads the first rows of the train sample that DCI and SAP read in full."""
    model, dataset = spread_model(), CoarseDSprites()
    overrides = {**SMALL, "mig": {"num_train": 50}, "unsupervised": {"num_train": 120}}
    chosen = ("mig", "unsupervised")
    run = run_evaluation(
        model, dataset, EvalSettings(preset="fast", overrides=overrides, metrics=chosen), np.random.default_rng(3)
    )
    train = dataset.sample_factors(120, random_streams(np.random.default_rng(3))["train"])
    assert np.array_equal(np.concatenate(dataset.requested), flat_index(train, dataset.factor_sizes))
    assert run.encoded == np.unique(flat_index(train, dataset.factor_sizes)).size


def test_training_mode_is_restored():
    model = spread_model()
    model.train()
    evaluate(model, CoarseDSprites(), settings(metrics=("mig",)), np.random.default_rng(0))
    assert model.training
    model.eval()
    evaluate(model, CoarseDSprites(), settings(metrics=("mig",)), np.random.default_rng(0))
    assert not model.training


def test_cached_codes_equal_direct_encoding():
    torch.manual_seed(0)
    model, dataset = BetaVAE(10).eval(), ProceduralDSprites()
    factors = dataset.sample_factors(300, np.random.default_rng(0))
    factors = np.concatenate([factors, factors[:100]])  # repeats come from the cache
    cache = CodeCache(model, dataset)
    mu, logvar = cache.lookup(factors)
    assert cache.encoded == np.unique(dataset.flat_index(factors)).size < factors.shape[0]
    with torch.inference_mode():
        direct_mu, direct_logvar = model.encoder(dataset.observations(factors))
    assert torch.equal(torch.from_numpy(mu), direct_mu)
    assert torch.equal(torch.from_numpy(logvar), direct_logvar)


def test_codes_do_not_depend_on_the_batch_they_were_encoded_in():
    torch.manual_seed(0)
    model, dataset = BetaVAE(10).eval(), ProceduralDSprites()
    x = dataset.observations(dataset.sample_factors(70, np.random.default_rng(0)))
    whole_mu, whole_logvar = encode_observations(model, x, chunk=64)
    for chunk in (1, 3, 7, 16, 70):
        mu, logvar = encode_observations(model, x, chunk=chunk)
        assert np.array_equal(mu, whole_mu) and np.array_equal(logvar, whole_logvar), chunk


def test_codes_are_exact_float32_whatever_precision_the_caller_trains_in():
    torch.manual_seed(0)
    model, dataset = BetaVAE(10).eval(), ProceduralDSprites()
    x = dataset.observations(dataset.sample_factors(40, np.random.default_rng(0)))
    with torch.inference_mode():
        expected_mu, expected_logvar = model.encoder(x)
    seen = []  # per forward: input and output dtypes, autocast on?, cuDNN's and cuBLAS's TF32 switches
    hook = model.encoder.register_forward_hook(
        lambda module, args, out: seen.append(
            (args[0].dtype, out[0].dtype, torch.is_autocast_enabled("cpu"), torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
        )
    )  # fmt: skip
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    set_tf32("all")  # as a trial with training.tf32 = all, inside its bfloat16 autocast
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mu, logvar = encode_observations(model, x)
        after = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    finally:
        hook.remove()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert seen == [(torch.float32, torch.float32, False, False, False)]
    assert after == (True, True)  # the trial's switches are back
    assert mu.dtype == logvar.dtype == np.float32
    assert np.array_equal(mu, expected_mu.numpy()) and np.array_equal(logvar, expected_logvar.numpy())


@pytest.mark.parametrize(
    ("rows", "chunk", "expected"),
    [(1, 64, 16), (16, 64, 16), (17, 64, 32), (33, 64, 64), (64, 64, 64), (5, 4096, 16), (1000, 4096, 1024),
     (4096, 4096, 4096), (3, 3, 16), (6, 70, 16), (70, 70, 70)],
)  # fmt: skip
def test_a_slice_is_padded_to_a_power_of_two_between_the_minimum_and_its_chunk(rows, chunk, expected):
    assert forward_rows(rows, chunk) == expected


def test_forwards_take_a_few_fixed_sizes_and_padding_leaves_the_codes_alone():
    torch.manual_seed(0)
    model, dataset = BetaVAE(10).eval(), ProceduralDSprites()
    x = dataset.observations(dataset.sample_factors(200, np.random.default_rng(1)))
    one_mu, one_logvar = encode_observations(model, x, chunk=200)  # one forward of all 200
    sizes: list[int] = []
    hook = model.encoder.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    try:
        for total in (1, 17, 64, 100, 200):
            for chunk in (64, 128):
                mu, logvar = encode_observations(model, x[:total], chunk)
                assert np.array_equal(mu, one_mu[:total]) and np.array_equal(logvar, one_logvar[:total]), (total, chunk)
    finally:
        hook.remove()
    assert set(sizes) == {16, 32, 64, 128}  # 1 -> 16, 17 -> 32, 100 = 64 + 36 -> 64 + 64, 200 = 128 + 72 -> 128 + 128


def test_cache_fills_lazily_across_lookups():
    torch.manual_seed(0)
    model, dataset = BetaVAE(3).eval(), ProceduralDSprites()
    cache = CodeCache(model, dataset)
    first = dataset.sample_factors(50, np.random.default_rng(0))
    second = np.concatenate([first[:20], dataset.sample_factors(30, np.random.default_rng(1))])
    mu_first, _ = cache.lookup(first)
    mu_second, _ = cache.lookup(second)
    assert cache.encoded == np.unique(dataset.flat_index(np.concatenate([first, second]))).size
    assert np.array_equal(mu_second[:20], mu_first[:20])


def test_sampled_representation_draws_fresh_noise_with_the_posterior_statistics():
    model, dataset = spread_model(latent_dim=4), ProceduralDSprites()
    model.eval()
    with torch.no_grad():  # posterior std of about 0.5 to 2 per latent
        model.encoder.logvar.bias.copy_(torch.tensor([-1.4, 0.0, 0.7, 1.4]))
    cache = CodeCache(model, dataset)
    represent = cache.representation("sampled", np.random.default_rng(0))
    n = 20000
    factors = np.repeat(dataset.sample_factors(1, np.random.default_rng(5)), n, axis=0)
    codes = represent(factors)
    assert cache.encoded == 1
    mu, logvar = cache.lookup(factors[:1])
    mean_codes = cache.representation("mean")(factors[:1])
    assert np.array_equal(mean_codes, mu)
    assert np.unique(codes, axis=0).shape[0] == n  # every repeat got its own draw
    assert not np.allclose(codes, mu)
    sigma = np.exp(0.5 * logvar[0])
    assert np.all(np.abs(codes.mean(axis=0) - mu[0]) < 5 * sigma / math.sqrt(n))
    assert np.allclose(codes.var(axis=0, ddof=1), sigma**2, rtol=0.05)
    assert not np.array_equal(represent(factors[:5]), represent(factors[:5]))  # fresh eps on every lookup


def test_sampled_evaluation_is_finite_and_differs_from_the_mean():
    chosen = ("mig", "unsupervised")
    mean = evaluate(spread_model(), CoarseDSprites(), settings(metrics=chosen), np.random.default_rng(2))
    sampled = evaluate(
        spread_model(), CoarseDSprites(), settings(metrics=chosen, representation="sampled"), np.random.default_rng(2)
    )
    assert set(sampled) == set(mean)
    assert all(math.isfinite(v) for v in sampled.values())
    assert sampled["disent/gaussian_total_correlation"] != mean["disent/gaussian_total_correlation"]


def test_dci_backends_give_the_same_scores():
    chosen = ("dci",)
    exact = evaluate(spread_model(), CoarseDSprites(), settings(metrics=chosen), np.random.default_rng(3))
    reference = evaluate(
        spread_model(), CoarseDSprites(), settings(metrics=chosen, dci_backend="sklearn"), np.random.default_rng(3)
    )
    for score in SCORES["dci"]:
        assert exact[f"disent/{score}"] == pytest.approx(reference[f"disent/{score}"], abs=1e-6)


def test_unknown_metric_and_backend_are_refused():
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        run_metric("nope", {}, lambda f: f, (2, 2), {}, None, None, 1)
    with pytest.raises(ValueError, match="dci_backend"):
        EvalSettings(dci_backend="xgboost")
