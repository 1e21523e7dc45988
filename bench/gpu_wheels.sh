#!/usr/bin/env bash
# The folder of wheels that bench/gpu_check.sh --wheels DIR installs on a GPU machine without network.
#
# Such a machine has a CUDA build of torch with numpy, scipy, scikit-learn (and its joblib), numba,
# safetensors, pyyaml, h5py and pytest; the trainer, the GPU section of the benchmarks and the GPU tests
# import a few packages beyond those, listed below (no Ray, MLflow or Optuna: a check trains no sweep).
# Run this where the package index is reachable. Each wheel is the version of constraints.txt when the
# project has that lock, else the version installed in this Python, so the GPU machine runs what the
# suite ran; binary wheels are for CPython PYTHON_VERSION (default 3.12) on x86-64 Linux.
#
# Usage: bench/gpu_wheels.sh DIR [PYTHON_VERSION]
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 || $1 == -* ]]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
folder=$1
python_version=${2:-3.12}
python=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)

# pydantic and what it imports (the settings); Pillow (the datasets' resize); pytest-timeout (pyproject's
# `timeout` option of pytest).
packages=(pydantic pydantic-core annotated-types typing-extensions typing-inspection pillow pytest-timeout)

normal() { tr '[:upper:]_.' '[:lower:]--' <<<"$1"; }  # a project name as pip compares it

pinned() {  # NAME -> NAME==VERSION, from the lock or from this Python
    local name=$1 version=""
    if [[ -f $repo/constraints.txt ]]; then
        version=$(while IFS='=' read -r project _ pin; do
            [[ $(normal "$project") == $(normal "$name") ]] && echo "$pin"
        done < <(grep -v '^#' "$repo/constraints.txt" | grep '==') | head -n 1)
    fi
    if [[ -z $version ]]; then
        version=$("$python" -c 'import sys, importlib.metadata as m; print(m.version(sys.argv[1]))' "$name") || {
            echo "gpu_wheels: $name is neither in constraints.txt nor installed in $python" >&2
            return 1
        }
    fi
    echo "$name==$version"
}

requirements=()
for name in "${packages[@]}"; do
    requirements+=("$(pinned "$name")")
done
mkdir -p "$folder"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --dest "$folder" "${requirements[@]}"
printf '%s\n' "${requirements[@]}" >"$folder/requirements.txt"
echo "gpu_wheels: ${#requirements[@]} wheels for CPython $python_version in $folder:" >&2
printf '  %s\n' "${requirements[@]}" >&2
