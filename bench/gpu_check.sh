#!/usr/bin/env bash
# On a machine with a CUDA device: the GPU tests (single trials and packs), then the GPU section of the
# benchmarks (single trials, trials sharing a card, packs of 1 to 40 models, several packs per card).
# Usage: bench/gpu_check.sh [OUTPUT_DIR]
# Writes OUTPUT_DIR/gpu-tests.log and OUTPUT_DIR/benchmarks.md (docs/benchmarks.md with the GPU section
# measured here); copy that section into docs/benchmarks.md to keep it.
set -uo pipefail
out=${1:-.}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,utilization.gpu --format=csv
python3 -m pytest -q -p no:cacheprovider -rs tests/trainables/test_trainer_gpu.py 2>&1 | tee "$out/gpu-tests.log"
tests=${PIPESTATUS[0]}
cp docs/benchmarks.md "$out/benchmarks.md"
python3 -m bench --only gpu --output "$out/benchmarks.md"
bench=$?
echo "gpu tests exit $tests, gpu benchmark exit $bench"
exit $(( tests || bench ))
