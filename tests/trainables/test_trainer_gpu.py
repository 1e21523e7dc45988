"""The GPU path of the trainer, with one model and with several: device placement, bfloat16
autocast, no host synchronisation in the step, the memory cap of a fractional GPU, compile,
checkpoints that move between devices, and evaluation in float32 as on the CPU.

These need a CUDA device and are skipped (and reported as skipped) without one;
`bench/gpu_check.sh` runs them on a GPU machine and counts a skip there as a failure.
Tests that compare the numbers of two runs use deterministic kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainables.data import ProceduralDSprites, byo
from trainables.checkpoint import load_weights
from trainables.evaluate import encode_observations, evaluate
from trainables.model import BetaVAE
from trainables.runtime import configure_process
from trainables.settings import EvalSettings, TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration, model_folder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

# cuBLAS is deterministic only with a fixed workspace, read when its first handle is made.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@pytest.fixture
def deterministic():
    """Deterministic kernels, chosen by shape rather than by timing, for tests that compare two runs.

    cuDNN's autotuner may pick an algorithm whose backward pass adds with
    atomics, so two identical runs differ in the last bits and Adam amplifies
    the difference. The process's one-time tuning runs first, since it turns
    the autotuner on.
    """
    configure_process(torch.device("cuda", torch.cuda.current_device()), None)
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without a deterministic kernel warns, by name
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def gpu_settings(training: dict | None = None, **data) -> TrialSettings:
    """A small GPU trial; `training` overrides training keys, the keyword arguments are data keys."""
    return TrialSettings.model_validate(
        {
            "data": data,
            "training": {"batch_size": 64, "device": "cuda", **(training or {})},
            "objective": {"capacity_steps": 100},
            "eval": {"preset": "fast", "metrics": ["mig", "sap", "unsupervised"]},
        }
    )


@pytest.fixture(scope="module")
def partial_npz(tmp_path_factory):
    """An own-format file with 2,000 rows of the dSprites grid: stored pixels with a row lookup."""
    sizes = ProceduralDSprites.factor_sizes
    rng = np.random.default_rng(0)
    flat = rng.choice(int(np.prod(sizes)), size=2000, replace=False)
    classes = np.stack(np.unravel_index(flat, sizes), axis=1)
    images = ProceduralDSprites().observations(classes)[:, 0].numpy().astype(bool)
    path = tmp_path_factory.mktemp("gpu") / "partial.npz"
    return byo.write(path, images, classes, list(ProceduralDSprites.factor_names))


SEEDS = (0, 1, 2)


def poison(trainer: Trainer, seed: int) -> None:
    with torch.no_grad():
        trainer.stacked.param("decoder.deconv.6.bias")[trainer.seeds.index(seed)].fill_(float("nan"))


@pytest.mark.parametrize(
    ("data", "seeds", "failed"),
    [
        ({}, (0,), False),
        ({"variant": "color"}, (0,), False),
        ({"variant": "noisy"}, (0,), False),
        ({"ground_truth": ["shape", "scale", "posX"]}, (0,), False),
        ("partial_npz", (0,), False),
        ({}, SEEDS, False),
        ({"variant": "noisy"}, SEEDS, False),
        ({}, SEEDS, True),
    ],
    ids=["procedural", "color", "noisy", "ground_truth", "npz_rows", "pack", "pack_noisy", "pack_with_a_failed_model"],
)
def test_a_training_step_never_waits_on_the_host(data, seeds, failed, request):
    if data == "partial_npz":
        data = {"name": "npz", "path": str(request.getfixturevalue("partial_npz"))}
    trainer = Trainer(gpu_settings(**data), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=seeds)
    trainer.train(3)  # first steps: cuDNN autotuning and allocator warm-up may synchronise
    if failed:
        poison(trainer, seeds[1])
        assert list(trainer.train(1).failed) == [seeds[1]]  # from here on its slice is masked in every step
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    report = trainer.window_report()
    assert sorted(report.models) == [s for s in seeds if not (failed and s == seeds[1])]
    assert all(np.isfinite(m["loss"]) for m in report.models.values()) and report.images_per_sec > 0


@pytest.mark.parametrize("seeds", [(0,), SEEDS], ids=["one", "pack"])
def test_a_trial_trains_on_the_gpu_in_bfloat16_and_keeps_float32_weights(seeds):
    seen: list[torch.dtype] = []
    for amp in (True, False):
        trainer = Trainer(gpu_settings({"amp": amp}), Configuration.of("beta_vae", {"beta": 4.0}), seeds=seeds)
        hook = trainer.stacked.register_forward_hook(lambda m, i, out: seen.append(out[0].dtype))
        report = trainer.train(2)
        hook.remove()
        assert all(np.isfinite(m["loss"]) for m in report.models.values())
        assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in trainer.stacked.parameters())
        assert trainer.dataset.observations(np.zeros((1, 5), dtype=int)).device.type == "cuda"
    assert seen == [torch.bfloat16] * 2 + [torch.float32] * 2


_CAP_SCRIPT = """
import sys, torch
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration
models = int(sys.argv[1])
settings = TrialSettings.model_validate({"training": {"batch_size": 64, "device": "cuda"}})
trainer = Trainer(settings, Configuration.of("beta_vae", {"beta": 4.0}), seeds=range(models), gpu_share=0.25)
trainer.train(2)
total = torch.cuda.get_device_properties(0).total_memory
small = torch.empty(int(0.1 * total), dtype=torch.uint8, device="cuda")
del small
try:
    torch.empty(int(0.3 * total), dtype=torch.uint8, device="cuda")
except torch.OutOfMemoryError:
    print("capped")
else:
    print("not capped")
"""


@pytest.mark.parametrize("models", [1, 5], ids=["one", "pack_of_5"])
def test_a_quarter_gpu_trial_cannot_take_more_than_a_quarter_of_the_memory(models):
    done = subprocess.run(
        [sys.executable, "-c", _CAP_SCRIPT, str(models)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "capped"


def test_a_gpu_trial_resumes_from_its_checkpoint_and_its_weights_load_on_the_cpu(tmp_path, deterministic):
    straight = Trainer(gpu_settings(), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(2,))
    straight.train(5)
    straight.save(tmp_path)
    straight.train(5)
    resumed = Trainer(gpu_settings(), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(2,))
    resumed.load(tmp_path)
    assert resumed.optimizer.state_dict()["state"][0]["exp_avg"].device.type == "cuda"
    resumed.train(5)
    assert resumed.step == straight.step == 10
    for a, b in zip(straight.stacked.parameters(), resumed.stacked.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    on_cpu = load_weights(tmp_path / model_folder(2), "cpu")
    assert all(w.device.type == "cpu" for w in on_cpu.values())
    BetaVAE(10).load_state_dict(on_cpu)


@pytest.fixture(scope="module")
def trained() -> Trainer:
    """A model trained 50 steps in bfloat16 with TF32 everywhere: evaluation must not inherit either."""
    trainer = Trainer(
        gpu_settings({"amp": True, "tf32": "all"}), Configuration.of("beta_vae", {"beta": 4.0}), seeds=(1,)
    )
    trainer.train(50)
    return trainer


def test_codes_encoded_on_the_gpu_are_the_cpus_float32_codes(trained):
    on_the_cpu = ProceduralDSprites("cpu")
    factors = on_the_cpu.sample_factors(4000, np.random.default_rng(0))
    on_gpu = encode_observations(trained.model(1).eval(), trained.dataset.observations(factors))
    on_cpu = encode_observations(trained.model(1).cpu().eval(), on_the_cpu.observations(factors))
    for gpu_codes, cpu_codes in zip(on_gpu, on_cpu):
        assert gpu_codes.dtype == np.float32
        # bfloat16 codes would collapse to a few values per latent (about 1,700 of 10,000 distinct)
        assert np.unique(gpu_codes).size >= 0.99 * np.unique(cpu_codes).size
        np.testing.assert_allclose(gpu_codes, cpu_codes, rtol=1e-4, atol=1e-5)


def test_scores_of_a_model_evaluated_on_the_gpu_match_the_cpu(trained):
    settings = EvalSettings(preset="fast", metrics=("mig", "sap", "unsupervised"))
    on_gpu = evaluate(trained.model(1), trained.dataset, settings, np.random.default_rng(0))
    on_cpu = evaluate(trained.model(1).cpu(), ProceduralDSprites("cpu"), settings, np.random.default_rng(0))
    # float32 against float32: codes agree to about 1e-6, so a histogram bin or a threshold flips rarely
    for key in ("disent/mig", "disent/sap"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], abs=2e-3), key
    assert on_gpu["disent/gaussian_total_correlation"] == pytest.approx(
        on_cpu["disent/gaussian_total_correlation"], rel=1e-3
    )


def test_a_pack_on_the_gpu_starts_as_its_trials_of_one_model(deterministic):
    pack = Trainer(gpu_settings(), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=SEEDS)
    first = pack.train(1)
    for seed in SEEDS:
        alone = Trainer(gpu_settings(), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(seed,)).train(1)
        assert first.models[seed]["loss"] == pytest.approx(alone.models[seed]["loss"], rel=1e-3)


# Packs of 1 and 5 at batch 64: the GPU benchmark's compiled rows of those sizes then find these graphs
# in Inductor's cache (bench/gpu_check.sh runs the tests first), and the check spends two compiles fewer.
@pytest.mark.parametrize("seeds", [(3,), (0, 1, 2, 3, 4)], ids=["one", "pack"])
def test_a_compiled_trial_trains_like_the_plain_one_and_checkpoints_plain_models(tmp_path, seeds):
    plain = Trainer(gpu_settings({"compile": False}), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=seeds)
    compiled = Trainer(gpu_settings({"compile": True}), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=seeds)
    expected, got = plain.train(20), compiled.train(20)
    for seed in seeds:
        assert got.models[seed]["loss"] == pytest.approx(expected.models[seed]["loss"], rel=0.01)
    compiled.save(tmp_path)
    on_cpu = load_weights(tmp_path / model_folder(seeds[0]), "cpu")
    BetaVAE(10).load_state_dict(on_cpu)  # a plain model, readable without a GPU
    resumed = Trainer(gpu_settings({"compile": True}), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=seeds)
    resumed.load(tmp_path)
    report = resumed.train(5)
    assert resumed.step == 25 and all(np.isfinite(m["loss"]) for m in report.models.values())
