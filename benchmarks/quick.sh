#!/usr/bin/env bash
# A short representative run (10% of each task, edge default batch 10 / replay 10), written to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
edge-cl bench --stream rotated-mnist --scale 0.1 --methods sgd,er,er+mas --budget-samples 500 --bare \
  --json benchmarks/results/rotated-mnist-quick.json --plots benchmarks/results/rotated-mnist-quick \
  --write-benchmarks rotated-mnist-quick "$@"
