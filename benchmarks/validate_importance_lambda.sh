#!/usr/bin/env bash
# How EWC's and MAS's default lambdas (1e-4 / 3e-4) were checked after the in-step estimate and the gradient
# bound of 5: er+ewc and er+mas against er on validation seeds (100 and up, never the reported seeds 0-2) of
# the two streams where they missed beating er on the reported seeds (gradual-rotation, permuted-mnist), at
# lambda 1e-4, 3e-4 and 1e-3. JSON results go to benchmarks/results/val-lambda/; the paired per-seed table is
# written into BENCHMARKS.md (section importance-lambda-validation).
# Usage: benchmarks/validate_importance_lambda.sh
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/val-lambda
mkdir -p "$o"
run() { edge-cl bench --budget-samples 500 --no-bare --threads 1 "$@" > /dev/null; }
files=()
for lam in 1e-4 3e-4 1e-3; do
  run --stream gradual-rotation --methods er,er+ewc,er+mas --method-param importance_lambda=$lam --scale 0.3 \
    --seed 100 --repeat 6 --json "$o/gradual-lambda$lam.json"
  run --stream permuted-mnist --methods er,er+ewc,er+mas --method-param importance_lambda=$lam --scale 0.1 \
    --seed 100 --repeat 3 --json "$o/permuted-lambda$lam.json"
  files+=("$o/gradual-lambda$lam.json" "$o/permuted-lambda$lam.json")
done
python3 benchmarks/summary.py "${files[@]}" --write-benchmarks --section importance-lambda-validation \
  --title "EWC / MAS lambda on validation seeds (issue #10; seeds 100+, never the reported ones)"
