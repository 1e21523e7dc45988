"""Process-wide tuning: large step buffers stay mapped between steps; per-trial settings are re-applied."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from trainables.runtime import configure_process

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
