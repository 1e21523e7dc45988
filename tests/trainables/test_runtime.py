"""Process-wide tuning: large step buffers stay mapped between steps; per-trial settings are re-applied."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from trainables.runtime import configure_process

# A fresh process: the allocator's settings are process-wide and this one may have set them already.
_FAULTS_SCRIPT = """
import json, resource, sys
from trainables.settings import TrialSettings
from trainables.trainer import Trainer
batch = int(sys.argv[1])
trainer = Trainer(TrialSettings.model_validate({"training": {"batch_size": batch, "threads": 1}}), 4.0, 0.0, 0)
trainer.train(2)  # the heap grows to the step's peak
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
trainer.train(3)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3))
"""


def page_faults_per_step(batch: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_SCRIPT, str(batch)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_large_batch_reuses_its_buffers_instead_of_faulting_them_in_every_step():
    batch = 256
    # The first convolution's output alone: batch x 32 channels x 32 x 32 float32, above glibc's
    # largest mmap threshold (32 MiB). Were it mmap-ed per step, each step would fault all its pages.
    pages = batch * 32 * 32 * 32 * 4 // 4096
    assert page_faults_per_step(batch) < pages / 100


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
