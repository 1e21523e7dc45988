"""The suite's markers: strict, so a misspelt one fails collection instead of selecting nothing;
`sweep` on the tests that start a sweep, `gpu` on those that need a CUDA device."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OBJECT_STORE = "tests/sweeper/test_object_store.py"
GPU = "tests/trainables/test_trainer_gpu.py"


def test_markers_are_strict_and_registered():
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in options["addopts"].split()
    assert {marker.split(":")[0] for marker in options["markers"]} == {"sweep", "gpu"}


def functions_in(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_the_sweep_and_gpu_markers_select_the_tests_that_need_them():
    # As `-m` selects them: the marker sat on a helper, so the object-store sweep ran under -m "not sweep".
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "sweep or gpu",
         OBJECT_STORE, GPU],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    selected = {line.split("::")[1].split("[")[0] for line in done.stdout.splitlines() if "::" in line}
    launches = "test_a_sweep_checkpoints_to_the_object_store_survives_its_driver_and_is_read_back_from_it"
    assert selected == {launches} | functions_in(GPU)
    assert launches in functions_in(OBJECT_STORE)
