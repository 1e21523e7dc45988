"""The GPU path of the trainer, with one model and with several: device placement, bfloat16
autocast, no host synchronisation in the step, the memory cap of a fractional GPU, compile, and
checkpoints that move between devices.

These need a CUDA device and are skipped (and reported as skipped) without one.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from trainables.data import ProceduralDSprites, byo
from trainables.checkpoint import load_weights
from trainables.evaluate import evaluate
from trainables.model import BetaVAE
from trainables.settings import EvalSettings, TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration, model_folder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


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


def test_a_gpu_trial_resumes_from_its_checkpoint_and_its_weights_load_on_the_cpu(tmp_path):
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
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # cuDNN may pick other kernels
    on_cpu = load_weights(tmp_path / model_folder(2), "cpu")
    assert all(w.device.type == "cpu" for w in on_cpu.values())
    BetaVAE(10).load_state_dict(on_cpu)


def test_scores_of_a_model_evaluated_on_the_gpu_match_the_cpu():
    trainer = Trainer(gpu_settings(), Configuration.of("beta_vae", {"beta": 4.0}), seeds=(1,))
    trainer.train(50)
    settings = EvalSettings(preset="fast", metrics=("mig", "sap", "unsupervised"))
    on_gpu = evaluate(trainer.model(1), trainer.dataset, settings, np.random.default_rng(0))
    model = trainer.model(1).cpu()
    on_cpu = evaluate(model, ProceduralDSprites("cpu"), settings, np.random.default_rng(0))
    for key in ("disent/mig", "disent/sap", "disent/gaussian_total_correlation"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], rel=0.05, abs=0.01), key


def test_a_pack_on_the_gpu_starts_as_its_trials_of_one_model():
    pack = Trainer(gpu_settings(), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=SEEDS)
    first = pack.train(1)
    for seed in SEEDS:
        alone = Trainer(gpu_settings(), Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(seed,)).train(1)
        assert first.models[seed]["loss"] == pytest.approx(alone.models[seed]["loss"], rel=1e-3)


@pytest.mark.parametrize("seeds", [(3,), SEEDS], ids=["one", "pack"])
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
