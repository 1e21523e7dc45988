"""Process-wide tuning: large step buffers stay mapped between steps; per-trial settings (threads, TF32)
are re-applied and read back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from trainables.runtime import configure_process, exact_float32, set_tf32, tf32_mode
from trainables.settings import TrainingSettings, TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration

# A fresh process: the allocator's settings are process-wide and this one may have set them already.
_FAULTS_SCRIPT = """
import json, resource, sys
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
from trainables.trial import Configuration
batch, models = int(sys.argv[1]), int(sys.argv[2])
settings = TrialSettings.model_validate({"training": {"batch_size": batch, "threads": 1}})
trainer = Trainer(settings, Configuration.of("beta_vae", {"beta": 4.0}), range(models))
trainer.train(2)  # the heap grows to the step's peak (Adam's state appears at the first step)
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    trainer.train(1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# The median: a late step may still grow the heap once (fragmentation), a mapped buffer costs every step.
print(json.dumps(sorted(faults)[2]))
"""


def page_faults_per_step(batch: int, models: int) -> float:
    """The median of minor page faults per training step of a trial of `models` models."""
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_SCRIPT, str(batch), str(models)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("batch", "models"), [(256, 1), (64, 5)], ids=["batch_256", "pack_of_5"])
def test_large_steps_reuse_their_buffers_instead_of_faulting_them_in_every_step(batch, models):
    # The first convolution's output alone: images x 32 channels x 32 x 32 float32, above glibc's
    # largest mmap threshold (32 MiB). Were it mmap-ed per step, each step would fault all its pages.
    pages = batch * models * 32 * 32 * 32 * 4 // 4096
    assert page_faults_per_step(batch, models) < pages / 100


def test_threads_are_set_per_trial_and_restored_for_a_trial_without_its_own():
    before = torch.get_num_threads()
    configure_process(torch.device("cpu"), threads=None)  # the default is what the process had
    default = torch.get_num_threads()
    try:
        configure_process(torch.device("cpu"), threads=1)
        assert torch.get_num_threads() == 1
        configure_process(torch.device("cpu"), threads=None)
        assert torch.get_num_threads() == default
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def tf32_switches():
    """PyTorch's two TF32 switches, restored after the test: they are process-wide."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def switches() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize(
    ("mode", "convolutions", "matrix_products"),
    [("off", False, False), ("convolutions", True, False), ("all", True, True)],
)
def test_a_trials_tf32_setting_sets_both_switches_and_reads_back(tf32_switches, mode, convolutions, matrix_products):
    # The switches start opposite to the setting, as a previous trial in the process may have left them.
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = not convolutions, not matrix_products
    configure_process(torch.device("cpu"), threads=None, tf32=mode)
    assert switches() == (convolutions, matrix_products)
    assert tf32_mode() == mode


def test_the_default_tf32_setting_is_what_pytorch_does_by_itself():
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert fresh.stdout.split() == ["True", "False"]
    assert TrainingSettings().tf32 == "convolutions"


def test_a_trainer_applies_its_tf32_setting(tf32_switches):
    for mode, expected in (("off", (False, False)), ("all", (True, True))):
        settings = TrialSettings.model_validate({"training": {"batch_size": 2, "threads": 1, "tf32": mode}})
        Trainer(settings, Configuration.of("beta_vae", {"beta": 4.0}), (0,))
        assert switches() == expected and tf32_mode() == mode


def test_exact_float32_turns_tf32_off_inside_and_restores_the_switches(tf32_switches):
    set_tf32("all")
    with exact_float32():
        assert switches() == (False, False) and tf32_mode() == "off"
    assert switches() == (True, True)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = False, True
    assert tf32_mode() == "matrix products only"  # a state no setting makes, set by someone else, reported as it is


def test_an_unknown_tf32_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="training.tf32 = 'some'"):
        set_tf32("some")
    with pytest.raises(ValueError, match="tf32"):
        TrainingSettings(tf32="fast")
