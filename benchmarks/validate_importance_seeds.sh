#!/usr/bin/env bash
# Whether er+ewc / er+mas beat er on gradual-rotation and permuted-mnist at any lambda, with enough seeds to
# tell (issue #10): twenty validation seeds (100-119, never the reported 0-2) per lambda, where three seeds'
# paired spread (about 0.7-0.9 points) is as large as the effect. The paired table (mean, and on how many seeds
# the method came out ahead of er) goes into BENCHMARKS.md, section importance-lambda-20seeds; JSON to
# benchmarks/results/val-seeds/. Two lanes side by side, one torch thread each (about 25 minutes on 2 cores).
# Usage: benchmarks/validate_importance_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/val-seeds
mkdir -p "$o"
run() {  # lambda, then bench arguments
  local lam=$1; shift
  edge-cl bench --methods er,er+ewc,er+mas --budget-samples 500 --no-bare --threads 1 --seed 100 --repeat 20 \
    --method-param importance_lambda="$lam" "$@" > /dev/null
}
lane() {  # lambdas this lane runs on both streams
  for lam in "$@"; do
    run "$lam" --stream permuted-mnist --scale 0.1 --json "$o/permuted-$lam.json"
    run "$lam" --stream gradual-rotation --scale 0.3 --json "$o/gradual-$lam.json"
  done
}
lambdas=(3e-5 1e-4 3e-4 1e-3)
lane 3e-5 1e-3 & other=$!
lane 1e-4 3e-4
wait "$other"
files=()
for stream in gradual permuted; do
  for lam in "${lambdas[@]}"; do files+=("$o/$stream-$lam.json"); done
done
python3 benchmarks/summary.py "${files[@]}" --write-benchmarks --section importance-lambda-20seeds \
  --title "er+ewc and er+mas against er at four lambdas over twenty validation seeds (100-119) of gradual-rotation and permuted-mnist (issue #10)"
