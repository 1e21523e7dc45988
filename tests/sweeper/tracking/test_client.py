"""Opening the tracking store: two first launches in one folder create MLflow's SQLite schema once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

# Each process imports MLflow, says it is ready, waits for the word, then opens the store.
OPEN_STORE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sweeper.tracking.client import connect

    folder = Path(sys.argv[1])
    (folder / f"ready-{sys.argv[2]}").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)
    connect(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    print("opened")
    """
)


def test_two_processes_opening_a_fresh_sqlite_store_at_once_both_succeed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_STORE, str(tmp_path), str(i)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs), "a process ended before it was ready"
        if time.monotonic() >= deadline:
            pytest.fail("a process did not start")
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0 and out.strip() == "opened", err[-3000:]
