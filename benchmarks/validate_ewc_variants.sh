#!/usr/bin/env bash
# Issue #10: does anything make er+ewc beat er where it does not (permuted-mnist, gradual-rotation) without
# losing a drift stream? Validation seeds only (100 and up, never the reported 0-2):
#  1. the exact Fisher (benchmarks/experiments/exact_fisher.py, method `ewc-exact`) against edge_cl's empirical
#     Fisher, er+ewc-exact / er+ewc / er in one run, on every stream er+ewc is reported on;
#  2. smaller buffers (the bytes of 100 and of 50 float32 samples), where replay covers the past worse and a
#     penalty has more to add, for er+ewc and er+mas.
# JSON goes to benchmarks/results/val-ewc/; the paired table is written into BENCHMARKS.md (section
# ewc-variants-validation). Two lanes side by side, one torch thread each (about 12 minutes on 2 cores).
# Usage: benchmarks/validate_ewc_variants.sh
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/val-ewc
mkdir -p "$o"
export PYTHONPATH="$PWD/benchmarks/experiments${PYTHONPATH:+:$PYTHONPATH}"
run() { edge-cl bench --no-bare --threads 1 --seed 100 "$@" > /dev/null; }
exact=(--methods er,er+ewc,er+ewc-exact --plugins exact_fisher --budget-samples 500)
images() {
  run "${exact[@]}" --stream gradual-rotation --scale 0.3 --repeat 6 --json "$o/gradual-exact.json"
  run "${exact[@]}" --stream permuted-mnist --scale 0.1 --repeat 3 --json "$o/permuted-exact.json"
  run "${exact[@]}" --stream rotated-mnist --scale 0.1 --repeat 3 --json "$o/rotated-exact.json"
  for n in 100 50; do
    run --methods er,er+ewc,er+mas --budget-samples $n --stream gradual-rotation --scale 0.3 --repeat 6 \
      --json "$o/gradual-buffer$n.json"
  done
}
rest() {
  for s in sea agrawal rbf; do
    run "${exact[@]}" --stream $s --repeat 3 --json "$o/$s-raw-exact.json"
  done
  run "${exact[@]}" --stream agrawal --repeat 3 --standardize --json "$o/agrawal-std-exact.json"
  run "${exact[@]}" --stream elec2 --batch 1 --replay-batch 1 --standardize --json "$o/elec2-std-exact.json"
  for n in 100 50; do
    run --methods er,er+ewc,er+mas --budget-samples $n --stream permuted-mnist --scale 0.1 --repeat 3 \
      --json "$o/permuted-buffer$n.json"
  done
}
images & lane=$!
rest
wait "$lane"
files=()
for name in gradual permuted rotated sea-raw agrawal-raw rbf-raw agrawal-std elec2-std; do files+=("$o/$name-exact.json"); done
for n in 100 50; do files+=("$o/gradual-buffer$n.json" "$o/permuted-buffer$n.json"); done
python3 benchmarks/summary.py "${files[@]}" --write-benchmarks --section ewc-variants-validation \
  --title "EWC with the exact Fisher, and EWC / MAS at smaller buffers, on validation seeds (issue #10; seeds 100+, never the reported ones)"
