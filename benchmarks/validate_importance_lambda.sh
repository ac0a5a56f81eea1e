#!/usr/bin/env bash
# How EWC's and MAS's default lambdas (1e-4 / 3e-4) were checked (issue #10): er+ewc and er+mas against er on
# validation seeds (100 and up, never the reported seeds 0-2) of the two streams where they missed beating er on
# the reported seeds (gradual-rotation, permuted-mnist), the paired per-seed table written into BENCHMARKS.md.
# - No argument: the check after the in-step estimate and the gradient bound of 5, lambda 1e-4, 3e-4 and 1e-3 on
#   6 / 3 seeds; JSON in benchmarks/results/val-lambda/, section importance-lambda-validation.
# - SEEDS (e.g. 20): lambda 3e-5 to 1e-3 on SEEDS seeds of each stream, where three seeds' paired spread (about
#   0.7-0.9 points) is as large as the effect; JSON in benchmarks/results/val-lambda-<SEEDS>seeds/, section
#   importance-lambda-<SEEDS>seeds (about 35 minutes for 20 on 2 cores: permuted-mnist is the longer lane).
# Two lanes side by side, one torch thread each.
# Usage: benchmarks/validate_importance_lambda.sh [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
  lambdas=(1e-4 3e-4 1e-3); gradual=6; permuted=3
  o=benchmarks/results/val-lambda; section=importance-lambda-validation
  title="EWC / MAS lambda on validation seeds (issue #10; seeds 100+, never the reported ones)"
else
  lambdas=(3e-5 1e-4 3e-4 1e-3); gradual=$1; permuted=$1
  o=benchmarks/results/val-lambda-${1}seeds; section=importance-lambda-${1}seeds
  title="er+ewc and er+mas against er at four lambdas over $1 validation seeds (100-$((99 + $1))) of gradual-rotation and permuted-mnist (issue #10)"
fi
mkdir -p "$o"
run() {  # lambda, stream, scale, seeds
  edge-cl bench --methods er,er+ewc,er+mas --budget-samples 500 --no-bare --threads 1 --seed 100 \
    --method-param importance_lambda="$1" --stream "$2" --scale "$3" --repeat "$4" \
    --json "$o/${2%%-*}-lambda$1.json" > /dev/null
}
lane() {  # every lambda on one stream
  for lam in "${lambdas[@]}"; do run "$lam" "$@"; done
}
lane permuted-mnist 0.1 "$permuted" & other=$!
lane gradual-rotation 0.3 "$gradual"
wait "$other"
files=()
for lam in "${lambdas[@]}"; do files+=("$o/gradual-lambda$lam.json" "$o/permuted-lambda$lam.json"); done
python3 benchmarks/summary.py "${files[@]}" --write-benchmarks --section "$section" --title "$title"
