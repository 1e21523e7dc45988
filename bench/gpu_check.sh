#!/usr/bin/env bash
# The GPU check in one go on a GPU machine without network: the GPU tests, then the GPU section of the
# benchmarks, within six minutes on one H100.
#
# Usage: bench/gpu_check.sh [--wheels DIR] [--cpu-smoke] OUT
#   --wheels DIR  the wheels bench/gpu_wheels.sh made (pydantic and the rest the trainer needs beyond the
#                 machine's torch, numpy, scipy, scikit-learn, numba, safetensors, pyyaml, h5py and pytest),
#                 installed into a temporary folder on PYTHONPATH; the machine's Python is left as it is
#   --cpu-smoke   the same steps on the CPU at tiny sizes (the GPU tests skip), so the script cannot rot
#                 between GPU runs; the test suite runs it
# Every step runs under `timeout`, within what is left of the check's deadline, and writes OUT/STEP.log
# as it finishes: environment, wheels, imports, gpu-tests (and gpu-tests.xml), gpu-bench (and
# gpu-section.md and gpu-rows.json as each row finishes, then benchmarks.md: docs/benchmarks.md with
# the section measured here, to copy from). OUT/summary.md comes last: each step, its outcome and
# time, and the section's figures. PYTHON names the interpreter (default python3).
# Exit: 0 every step passed; 1 a step failed, timed out or was left out; 2 wrong usage, no CUDA device, or
# the trainer cannot be imported (the steps after are not run, and the summary says so).
set -uo pipefail

usage() {
    sed -n '5,18p' "$0" >&2
    exit 2
}
smoke=0 wheels="" out=""
while (($#)); do
    case $1 in
        --cpu-smoke) smoke=1 ;;
        --wheels) [[ $# -ge 2 ]] || usage; wheels=$2; shift ;;
        -h | --help) usage ;;
        -*) echo "gpu_check: unknown option $1" >&2; usage ;;
        *) [[ -z $out ]] || usage; out=$1 ;;
    esac
    shift
done
[[ -n $out ]] || usage

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
if ((smoke)); then
    kind="CPU smoke" allowed=240 tests_max=90 bench_max=180 row_margin=15 bench_flag=(--smoke)
else
    # Tests first: their compiled packs of 1 and 5 leave graphs in Inductor's cache for the section's rows.
    kind="GPU" allowed=345 tests_max=170 bench_max=200 row_margin=50 bench_flag=()
fi
started=$(date +%s)
deadline=$((started + allowed))
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
export PYTHONPATH="$repo:$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
export python out site wheels  # for the steps written as functions, run by `timeout bash -c`
cd "$repo" || exit 2

rows=()      # summary table rows
failed=0     # 1: a step did not pass; 2: the check could not go on
blocked=""   # why the steps still to come are not run
record() {  # STEP OUTCOME SECONDS: one summary row; an outcome other than "passed..." fails the check
    rows+=("| $1 | $2 | $3 s | $1.log |")
    [[ $2 == passed* ]] || failed=$((failed > 1 ? failed : 1))
}
block() {  # REASON: the steps still to come cannot run
    blocked=$1
    failed=2
}

limit=0 took=0
run_step() {  # STEP MAX_SECONDS COMMAND...: run it under timeout into OUT/STEP.log; sets $limit and $took
    local step=$1 max=$2 left
    shift 2
    left=$((deadline - $(date +%s) - 5))
    limit=$((max < left ? max : left))
    if ((limit < 5)); then
        echo "not run: the check's $allowed s were spent" >"$out/$step.log"
        took=0
        return 125
    fi
    local began rc
    began=$(date +%s)
    if declare -F "$1" >/dev/null; then
        timeout -k 10 "$limit" bash -c "$(declare -f "$1"); $1" >"$out/$step.log" 2>&1
    else
        timeout -k 10 "$limit" "$@" >"$out/$step.log" 2>&1
    fi
    rc=$?
    took=$(($(date +%s) - began))
    return $rc
}

outcome() {  # EXIT_CODE -> the outcome of a step whose exit code says it all
    case $1 in
        0) echo "passed" ;;
        124 | 137) echo "timed out after $limit s" ;;
        125) echo "not run: the check's $allowed s were spent" ;;
        *) echo "failed (exit $1)" ;;
    esac
}

# -- environment -----------------------------------------------------------------------------------
environment() {
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'unknown (not a git checkout)')"
    echo "python: $(command -v "$python") $("$python" --version 2>&1)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,utilization.gpu --format=csv
    else
        echo "nvidia-smi: not on this machine"
    fi
    "$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda,
                  "CUDA visible:", torch.cuda.is_available())'
}
run_step environment 30 environment
rc=$?
record environment "$(outcome $rc)" "$took"
cuda=$(grep -o 'CUDA visible: [A-Za-z]*' "$out/environment.log" | cut -d' ' -f3)
if ((!smoke)) && [[ $cuda != True ]]; then
    block "no CUDA device is visible (--cpu-smoke runs the check on a CPU)"
fi

# -- wheels and imports ----------------------------------------------------------------------------
install_wheels() {
    shopt -s nullglob
    local files=("$wheels"/*.whl)
    if ((${#files[@]} == 0)); then
        echo "no wheels in $wheels (bench/gpu_wheels.sh DIR makes them)"
        return 1
    fi
    if "$python" -m pip --version >/dev/null 2>&1; then
        "$python" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "${files[@]}" || return 1
    else  # no pip: a wheel of pure modules and dist-info is installed by unpacking it
        echo "no pip in $python: unpacking the wheels"
        "$python" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
            "$site" "${files[@]}" || return 1
    fi
    # Each package of the folder as this Python finds it by name: installed, and first on its path.
    "$python" -c 'import sys, importlib.metadata as m
from pathlib import Path
names = sorted(d.metadata["Name"] for d in m.distributions(path=[sys.argv[1]]))
found = [m.distribution(name) for name in names]
shadowed = [name for name, d in zip(names, found) if Path(d.locate_file("")).resolve() != Path(sys.argv[1]).resolve()]
print("installed %d: %s" % (len(names), ", ".join("%s %s" % (n, d.version) for n, d in zip(names, found))))
sys.exit("found elsewhere first: " + ", ".join(shadowed) if shadowed else 0)' "$site"
}
if [[ -z $blocked ]]; then
    if [[ -n $wheels ]]; then
        run_step wheels 60 install_wheels
        rc=$?
        installed=$(grep -o '^installed [0-9]*:.*' "$out/wheels.log")
        record wheels "$(outcome $rc)${installed:+: $installed}" "$took"
    else
        echo "no --wheels: every package comes from $python's own installation" >"$out/wheels.log"
        record wheels "passed: none given, the packages of $python are used" 0
    fi
    run_step imports 60 "$python" -c 'import pydantic, PIL, pytest, pytest_timeout, trainables.trainer, bench.gpu'
    rc=$?
    record imports "$(outcome $rc)" "$took"
    ((rc == 0)) || block "the trainer, the section or pytest cannot be imported (imports.log)"
fi

# -- the GPU tests ---------------------------------------------------------------------------------
tests_outcome() {  # EXIT_CODE: from pytest's JUnit report; on a GPU machine a skipped test is a failure
    local counts
    counts=$("$python" -c 'import sys, xml.etree.ElementTree as t
s = t.parse(sys.argv[1]).getroot()
s = s if s.tag == "testsuite" else s.find("testsuite")
n = {k: int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
print(n["tests"] - n["failures"] - n["errors"] - n["skipped"], n["failures"] + n["errors"], n["skipped"])' \
        "$out/gpu-tests.xml" 2>/dev/null) || { outcome "$1"; return; }
    local passed fails skipped
    read -r passed fails skipped <<<"$counts"
    local said="$passed passed, $fails failed, $skipped skipped"
    if (($1 == 124 || $1 == 137)); then
        echo "timed out after $limit s"
    elif ((fails > 0 || $1 != 0)); then
        echo "failed: $said"
    elif ((smoke && passed == 0)); then
        echo "passed: $said (no CUDA on this machine: every GPU test skips)"
    elif ((skipped > 0)); then
        echo "failed: $said (a skip on a GPU machine is a check not made)"
    else
        echo "passed: $said"
    fi
}
if [[ -z $blocked ]]; then
    run_step gpu-tests "$tests_max" "$python" -m pytest -q -p no:cacheprovider -rs --durations=15 \
        --junitxml="$out/gpu-tests.xml" tests/trainables/test_trainer_gpu.py
    rc=$?
    record gpu-tests "$(tests_outcome $rc)" "$took"
fi

# -- the GPU section of the benchmarks -------------------------------------------------------------
bench_outcome() {  # EXIT_CODE: bench.gpu's 0 every row, 1 a row failed, 2 rows left out by the budget
    local counts
    counts=$("$python" -c 'import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
print(sum(r["status"] == "measured" for r in rows), len(rows))' "$out/gpu-rows.json" 2>/dev/null)
    case $1 in
        0) echo "passed: ${counts/ / of } rows measured" ;;
        2) echo "incomplete: ${counts/ / of } rows measured, the others left out by the time budget" ;;
        *) echo "$(outcome "$1")${counts:+: ${counts/ / of } rows measured}" ;;
    esac
}
if [[ -z $blocked ]]; then
    left=$((deadline - $(date +%s) - 5))
    budget=$(((bench_max < left ? bench_max : left) - row_margin))
    run_step gpu-bench "$bench_max" "$python" -m bench.gpu section "${bench_flag[@]}" --budget "$budget" \
        --section "$out/gpu-section.md" --rows "$out/gpu-rows.json" --document "$out/benchmarks.md"
    rc=$?
    record gpu-bench "$(bench_outcome $rc)" "$took"
fi

# -- summary ---------------------------------------------------------------------------------------
{
    echo "# GPU check ($kind)"
    echo
    echo "Started $(date -u -d "@$started" '+%Y-%m-%d %H:%M:%S') UTC; took $(($(date +%s) - started)) s of the $allowed s allowed."
    grep -E '^(commit|python|torch)' "$out/environment.log" 2>/dev/null | sed 's/^/- /'
    grep -v -E '^(commit|python|torch|name,)' "$out/environment.log" 2>/dev/null | sed 's/^/- device: /'
    echo
    echo "| step | outcome | time | log |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    [[ -z $blocked ]] || echo "| the steps after | not run: $blocked | 0 s | |"
    echo
    if ((failed)); then echo "Result: FAILED"; else echo "Result: PASSED"; fi
    if [[ -f $out/gpu-section.md ]]; then
        echo
        sed 's/^## /## Figures: /' "$out/gpu-section.md"
    fi
} >"$out/summary.md"
cat "$out/summary.md"
exit $((failed))
