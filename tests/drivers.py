"""Killing a sweep's driver at the event a resume test needs, never after a fixed time."""

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest


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
