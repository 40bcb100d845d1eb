#!/usr/bin/env bash
# The GPU check as one command, on a machine with a CUDA GPU and ember's dependencies installed:
# the CUDA tests (tests/gpu), then benchmarks/gpu_cifar2.py, benchmarks/imdb_gpu.py and
# benchmarks/image_folder.py on the GPU (its device-decode side: nvJPEG batches). Logs and
# JSON results go to $OUT (default benchmarks/results). Data: $EMBER_DATA, else ../shared/data
# (`make device-data` copies it into .device-data/ for machines that only get the repository).
# Usage: bash benchmarks/gpu_run.sh   (PYTHON=... to choose the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
case "$python" in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac
out="$(realpath -m "${OUT:-benchmarks/results}")"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -z "${EMBER_DATA:-}" ] && [ -d .device-data ]; then export EMBER_DATA="$PWD/.device-data"; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu_card.txt"
"$python" -m pytest -q -p no:cacheprovider -s tests/gpu 2>&1 | tee "$out/gpu_tests.log"
status=${PIPESTATUS[0]}
(cd benchmarks && "$python" gpu_cifar2.py --out "$out") 2>&1 | tee "$out/gpu_cifar2.log"
(cd benchmarks && "$python" imdb_gpu.py --out "$out") 2>&1 | tee "$out/imdb_gpu.log"
workers=$(( $(nproc) > 9 ? 8 : $(nproc) - 1 ))
(cd benchmarks && "$python" image_folder.py --files 4000 --repeats 3 --epoch-repeats 3 \
  --workers "$workers" --device cuda --folder "$out/.image-bench" --out "$out") 2>&1 | tee "$out/image_folder_gpu.log"
rm -rf "$out/.image-bench"
exit "$status"
