"""The import direction that keeps the pipeline readable: cli -> stages -> shared modules -> trainables.

Read from the source (every `import` and `from ... import`, lazy ones inside
functions included), so a shortcut that would load Ray Tune into `sweeper
status` or make `trainables` depend on the driver fails here, by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("run", "tracking", "analyse", "export")
SHARED = ("config", "console", "errors", "object_store", "record", "tags", "uris")


def modules(package: str) -> dict[str, Path]:
    root = REPO / package
    return {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for path in root.rglob("*.py")
    }


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def offending(module: str, path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}" for name in imports(path) if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


def test_sweeper_has_one_folder_per_stage_and_few_top_level_modules():
    top = sorted(p.stem for p in (REPO / "sweeper").glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 10, top
    for stage in STAGES:
        assert (REPO / "sweeper" / stage / "__init__.py").is_file()


def test_trainables_never_import_the_driver():
    problems = [p for m, path in modules("trainables").items() for p in offending(m, path, ("sweeper",))]
    assert problems == []


def test_metrics_import_neither_torch_nor_io():
    metrics = {m: p for m, p in modules("trainables").items() if m.startswith("trainables.metrics")}
    assert metrics
    problems = [p for m, path in metrics.items() for p in offending(m, path, ("torch", "pathlib", "io", "ray"))]
    assert problems == []


def test_shared_modules_import_no_stage_and_no_cli():
    forbidden = tuple(f"sweeper.{s}" for s in (*STAGES, "cli"))
    shared = {m: p for m, p in modules("sweeper").items() if m.split(".")[1:2] and m.split(".")[1] in SHARED}
    assert {m.split(".")[1] for m in shared} == set(SHARED)
    problems = [p for m, path in shared.items() for p in offending(m, path, (*forbidden, "ray", "mlflow"))]
    assert problems == []


@pytest.mark.parametrize("stage", ["analyse", "export"])
def test_analysis_and_export_never_import_the_run_stage_or_ray(stage):
    forbidden = ("sweeper.run", "sweeper.tracking.callback", "sweeper.cli", "ray")
    found = {m: p for m, p in modules("sweeper").items() if m.startswith(f"sweeper.{stage}")}
    assert found
    problems = [p for m, path in found.items() for p in offending(m, path, forbidden)]
    assert problems == []


def test_no_stage_imports_the_cli():
    found = {m: p for m, p in modules("sweeper").items() if m.split(".")[1:2] and m.split(".")[1] in STAGES}
    problems = [p for m, path in found.items() for p in offending(m, path, ("sweeper.cli",))]
    assert problems == []


def test_tag_names_import_nothing():
    assert imports(REPO / "sweeper" / "tags.py") == {"__future__", "__future__.annotations"}


def test_status_select_report_and_export_load_no_ray():
    """What the source says, checked in a fresh interpreter: transitive imports included."""
    import subprocess
    import sys

    modules = ("sweeper.cli", "sweeper.analyse.status", "sweeper.analyse.tagging", "sweeper.analyse.report",
               "sweeper.export.package", "sweeper.export.registry")  # fmt: skip
    script = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
