"""bench/gpu_check.sh on the CPU: its smoke run goes through every step the GPU check takes (wheels from a
folder, imports, the GPU tests, the GPU section) so that the script cannot rot between GPU runs, and
without a GPU the real check stops at once and says why."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from bench.gpu import SMOKE_PLAN

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"


def make_wheel(folder: Path, name: str = "gpu_check_probe", version: str = "1.0") -> Path:
    """A wheel of one module in the format pip installs (PEP 427), for the folder `--wheels` reads."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "ANSWER = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(text)},{len(text.encode())}\n" for path, text in files.items())
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in {**files, f"{info}/RECORD": record + f"{info}/RECORD,,\n"}.items():
            wheel.writestr(member, text)
    return path


def check(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def outcomes(summary: str) -> dict[str, str]:
    """Step -> outcome, from the summary's table."""
    cells = [line.strip("|").split(" | ") for line in summary.splitlines() if line.startswith("| ")]
    return {row[0].strip(): row[1].strip() for row in cells[1:] if len(row) == 4}


def test_the_cpu_smoke_runs_every_step_of_the_gpu_check_and_summarises_it(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels)
    out = tmp_path / "out"
    done = check("--cpu-smoke", "--wheels", str(wheels), str(out), timeout=400)
    summary = (out / "summary.md").read_text()
    assert done.returncode == 0, summary + done.stderr[-3000:]
    steps = outcomes(summary)
    assert list(steps) == ["environment", "wheels", "imports", "gpu-tests", "gpu-bench"]
    assert steps["environment"] == steps["imports"] == "passed"
    assert steps["wheels"] == "passed: installed 1: gpu-check-probe 1.0"  # found first on the steps' path
    assert re.fullmatch(r"passed: 0 passed, 0 failed, \d+ skipped \(no CUDA on this machine.*\)", steps["gpu-tests"])
    rows = len(SMOKE_PLAN.rows)
    assert steps["gpu-bench"] == f"passed: {rows} of {rows} rows measured"
    assert "Result: PASSED" in summary
    for log in ("environment", "wheels", "imports", "gpu-tests", "gpu-bench"):
        assert (out / f"{log}.log").is_file(), log
    section = (out / "gpu-section.md").read_text()
    assert "| 2 | true | float32 (CPU) |" in section  # the compiled row, checked to have compiled
    assert section.split("\n", 1)[1].strip() in summary  # the figures, below the summary's own title
    document = (out / "benchmarks.md").read_text()  # docs/benchmarks.md with this section, the others kept
    assert section.strip() in document and "<!-- section:training -->" in document


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the check on a machine without CUDA")
def test_the_gpu_check_without_a_gpu_stops_and_says_why(tmp_path):
    done = check(str(tmp_path), timeout=120)
    summary = (tmp_path / "summary.md").read_text()
    assert done.returncode == 2
    steps = outcomes(summary)
    assert steps["environment"] == "passed"
    assert steps["the steps after"].startswith("not run: no CUDA device is visible")
    assert "Result: FAILED" in summary and not (tmp_path / "gpu-tests.log").exists()


def test_the_gpu_check_refuses_a_call_without_its_output_folder():
    done = check("--cpu-smoke", timeout=30)
    assert done.returncode == 2 and "Usage: bench/gpu_check.sh" in done.stderr
