#!/usr/bin/env bash
# How MAS's and EWC's importance_scope defaults were chosen (issue #10): er+ewc and er+mas with the consolidated
# omega normalised over the whole model (mean 1 over all parameters) or over each parameter tensor, against er
# in the same run, on validation seeds (100 and up, never the reported seeds 0-2) of every bench stream that
# has an importance section: the image streams, and the drift streams raw and standardised. JSON results go to
# benchmarks/results/val-scope/; the paired per-seed table is written into BENCHMARKS.md (section
# importance-scope-validation). Two lanes run side by side (one torch thread each).
# Usage: benchmarks/validate_importance_scope.sh
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/val-scope
mkdir -p "$o"
run() { edge-cl bench --methods er,er+ewc,er+mas --budget-samples 500 --no-bare --threads 1 "$@" > /dev/null; }
images() {
  for scope in model tensor; do
    run --stream gradual-rotation --scale 0.3 --seed 100 --repeat 6 --method-param importance_scope=$scope \
      --json "$o/gradual-$scope.json"
    run --stream rotated-mnist --scale 0.1 --seed 100 --repeat 3 --method-param importance_scope=$scope \
      --json "$o/rotated-$scope.json"
    run --stream permuted-mnist --scale 0.1 --seed 100 --repeat 3 --method-param importance_scope=$scope \
      --json "$o/permuted-$scope.json"
  done
}
drift() {
  for scope in model tensor; do
    for s in sea agrawal rbf; do
      run --stream $s --seed 100 --repeat 3 --method-param importance_scope=$scope --json "$o/$s-raw-$scope.json"
      run --stream $s --seed 100 --repeat 3 --standardize --method-param importance_scope=$scope \
        --json "$o/$s-std-$scope.json"
    done
    run --stream elec2 --seed 100 --batch 1 --replay-batch 1 --standardize --method-param importance_scope=$scope \
      --json "$o/elec2-std-$scope.json"
  done
}
images & lane=$!
drift
wait "$lane"
files=()
for name in gradual rotated permuted sea-raw sea-std agrawal-raw agrawal-std rbf-raw rbf-std elec2-std; do
  files+=("$o/$name-model.json" "$o/$name-tensor.json")
done
python3 benchmarks/summary.py "${files[@]}" --write-benchmarks --section importance-scope-validation \
  --title "Importance normalised over the model or per tensor, on validation seeds (issue #10; seeds 100+, never the reported ones)"
