"""Killing a sweep's driver at the event a resume test needs, never after a fixed time."""

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Tune saves a sweep's experiment state at most every 10 s by default (more while saves are slow); a driver
# that a test kills once the state shows an event saves it every second, so the kill follows the event
# closely and the trial it catches need not train long past it.
SAVE_STATE_EVERY_SECOND = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}


def kill_when(driver: subprocess.Popen, ready: Callable[[], bool], seconds: float, missing: str) -> None:
    """SIGKILL the driver's process group once `ready()` holds; fail if the sweep ends first or `seconds` pass
    (`missing` says what never came). The group dies whatever happens, so no sweep outlives its test."""
    deadline = time.monotonic() + seconds
    try:
        while not ready():
            assert driver.poll() is None, "the sweep ended before it could be killed"
            if time.monotonic() >= deadline:
                pytest.fail(missing)
            time.sleep(0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


CHECKPOINT_NAME = re.compile(rb"checkpoint_[0-9]{6}")


def trials_in_state(sweep_dir: Path) -> list[tuple[str, bool]]:
    """(status, whether a resume would restore it from a checkpoint) of each trial in Tune's experiment state
    in `sweep_dir`. A result past a checkpoint step is not enough: the state can be saved between the result
    and the checkpoint's registration. Each trial's checkpoint manager is cloudpickled into the state; the
    checkpoint folders' names are found in its bytes, which are not unpickled."""
    found = []
    for state in sweep_dir.glob("experiment_state-*.json"):
        try:
            trials = json.loads(state.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):
            continue  # caught while Tune copies it into the folder: the next look reads it whole
        for trial, runtime in trials:
            manager = bytes.fromhex(json.loads(runtime)["checkpoint_manager"]["value"])
            found.append((json.loads(trial)["status"], bool(CHECKPOINT_NAME.search(manager))))
    return found
