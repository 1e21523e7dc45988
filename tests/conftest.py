"""Shared test set-up: one real smoke sweep for every test that needs a finished one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def run_sweeper(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m sweeper ARGS` in `cwd`, with the defaults a new user has (no tracking or Ray env)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def sweeper_cli():
    return run_sweeper


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """`sweeper launch configs/smoke.yaml` exactly as the README runs it, in a fresh folder."""
    folder = tmp_path_factory.mktemp("smoke")
    done = run_sweeper(["launch", str(REPO / "configs" / "smoke.yaml")], cwd=folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sweep_dir,) = (folder / "sweeps").iterdir()
    return folder, sweep_dir, done
