#!/usr/bin/env bash
# Re-runs every BENCHMARKS.md section that holds an importance method's row on the reported seeds (0-2): the
# issue #10 `*-importance` sections (float32 and bfloat16 state) and the issue #9 sections with an `er+mas`
# row, then the paired `methods-by-stream` table from their JSON. Two lanes side by side, one torch thread each
# (about 25 minutes on a 2-core machine). Stages (default: all three): `images` and `drift` run those lanes'
# bench sections, `summary` only rewrites the paired tables from the JSON already there.
# Usage: benchmarks/importance_sections.sh [images] [drift] [summary]
set -euo pipefail
cd "$(dirname "$0")/.."
r=benchmarks/results
mkdir -p "$r"
b() { edge-cl bench --threads 1 "$@" > /dev/null; }
s500=(--budget-samples 500)
all=er,er+ewc,er+mas,er+si,er+rwalk,er+scp,er+a-gem
images() {
  b "${s500[@]}" --stream rotated-mnist --methods $all --scale 0.1 --seed 0 --repeat 3 \
    --json $r/rotated-mnist-importance.json --write-benchmarks rotated-mnist-edge-importance
  b "${s500[@]}" --stream permuted-mnist --methods $all,der++ --scale 0.1 --seed 0 --repeat 3 \
    --json $r/permuted-mnist-importance.json --write-benchmarks permuted-mnist-edge-importance
  b "${s500[@]}" --stream gradual-rotation --methods $all --scale 0.3 --seed 0 --repeat 3 \
    --json $r/gradual-rotation-importance.json --write-benchmarks gradual-rotation-importance
  for s in rotated-mnist:0.1:rotated-mnist-edge-importance-bf16 gradual-rotation:0.3:gradual-rotation-importance-bf16 \
           permuted-mnist:0.1:permuted-mnist-edge-importance-bf16; do
    IFS=: read -r stream scale section <<< "$s"
    b "${s500[@]}" --stream "$stream" --methods er,er+ewc,er+mas --method-param state_dtype=bfloat16 --scale "$scale" --seed 0 \
      --repeat 3 --json "$r/${stream}-importance-bf16.json" --write-benchmarks "$section"
  done
  b "${s500[@]}" --stream gradual-rotation --methods er,der++,er+mas --protocol edge --seed 0 --repeat 3 --no-bare \
    --json $r/gradual-rotation-edge-issue9.json --write-benchmarks gradual-rotation-edge-functional
  # Ten seeds (0-9) where three cannot tell er+ewc / er+mas from er: the paired spread is as large as the effect.
  b "${s500[@]}" --stream gradual-rotation --methods er,er+ewc,er+mas --scale 0.3 --seed 0 --repeat 10 \
    --json $r/gradual-rotation-importance-10seeds.json --write-benchmarks gradual-rotation-importance-10seeds
  b "${s500[@]}" --stream permuted-mnist --methods er,er+ewc,er+mas --scale 0.1 --seed 0 --repeat 10 \
    --json $r/permuted-mnist-importance-10seeds.json --write-benchmarks permuted-mnist-importance-10seeds
}
drift() {
  b --budget-bytes 324056 --stream elec2 --methods sgd,$all,no-change --batch 1 --replay-batch 1 --standardize \
    --peers logreg,hat,arf --json $r/elec2-importance.json --write-benchmarks elec2-importance
  for s in sea agrawal rbf; do
    b "${s500[@]}" --stream $s --methods $all --standardize --seed 0 --repeat 3 --peers hat,arf \
      --json "$r/$s-importance.json" --write-benchmarks "$s-importance"
    # Raw units (no standardiser): er+mas and er+ewc beside issue #9's methods.
    b "${s500[@]}" --stream $s --methods er,der++,er+mas,er+ewc --protocol edge --seed 0 --repeat 3 --no-bare \
      --json "$r/$s-edge-issue9.json" --write-benchmarks "$s-edge-functional"
  done
  b "${s500[@]}" --stream elec2 --methods er,der++,er+mas,er+ewc --batch 1 --no-bare --json $r/elec2-issue9.json \
    --write-benchmarks elec2-functional
  b "${s500[@]}" --stream sea --methods er,der++,er-ace,cls-er,lwf,der,er+mas,er+ewc --protocol edge --seed 0 --repeat 3 --no-bare \
    --json $r/sea-edge-all-issue9.json --write-benchmarks sea-edge-functional-all
}
stages=("${@:-images drift summary}")
stages=(${stages[*]})
has() { [[ " ${stages[*]} " == *" $1 "* ]]; }
if has images && has drift; then
  images & lane=$!
  drift
  wait "$lane"
elif has images; then
  images
elif has drift; then
  drift
fi
has summary || exit 0
# The paired table over every issue #9 / #10 run (seed by seed against er); the split-mnist, DER-protocol and
# elec2-derpp-standardized JSON come from their own sections' commands (BENCHMARKS.md).
python3 benchmarks/summary.py \
  $r/rotated-mnist-der-issue9.json \
  $r/rotated-mnist-der-clser-lwf-issue9.json \
  $r/permuted-mnist-der-issue9.json \
  $r/permuted-mnist-der-six-issue9.json \
  $r/split-mnist-der-issue9.json \
  $r/split-mnist-der-ncm-issue9.json \
  $r/split-mnist-der-ncm-lr01-issue9.json \
  $r/split-mnist-der-ncm-cbrs-issue9.json \
  $r/split-mnist-der-twodraw-issue9.json \
  $r/split-mnist-der-six-issue9.json \
  $r/split-mnist-der-six-lr01-issue9.json \
  $r/gradual-rotation-edge-issue9.json \
  $r/elec2-issue9.json \
  $r/sea-edge-issue9.json \
  $r/sea-edge-all-issue9.json \
  $r/agrawal-edge-issue9.json \
  $r/rbf-edge-issue9.json \
  $r/rotated-mnist-importance.json \
  $r/permuted-mnist-importance.json \
  $r/gradual-rotation-importance.json \
  $r/elec2-importance.json \
  $r/elec2-derpp-standardized.json \
  $r/sea-importance.json \
  $r/agrawal-importance.json \
  $r/rbf-importance.json \
  $r/rotated-mnist-importance-bf16.json \
  $r/permuted-mnist-importance-bf16.json \
  $r/gradual-rotation-importance-bf16.json --write-benchmarks
python3 benchmarks/summary.py $r/gradual-rotation-importance-10seeds.json $r/permuted-mnist-importance-10seeds.json \
  --write-benchmarks --section importance-10seeds \
  --title "er+ewc and er+mas against er over ten seeds (0-9) of gradual-rotation and permuted-mnist (issue #10)"
