#!/usr/bin/env bash
# Issue #28 item 5's target for the default learner: given only a model and a budget (the bytes of 500 float32
# samples), the DER protocol, the reported seeds 0-2. Every learner option is left unset (the learner's defaults:
# method der++, storage float16, standardize None); sections <stream>-der-defaults, then targets.py.
# Usage: benchmarks/der_defaults.sh [rotated|split|permuted ...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
bench() { python -m edge_cl.cli.main bench --methods der++ --budget-samples 500 --seed 0 --repeat 3 --no-bare \
  --threads 1 "$@"; }
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(rotated split permuted)
for stage in "${stages[@]}"; do
  case "$stage" in
    rotated|permuted) bench --stream "$stage-mnist" --protocol der --json "$out/$stage-mnist-der-defaults.json" \
                        --write-benchmarks "$stage-mnist-der-defaults" ;;
    # DER's seq-mnist protocol: batch 10, replay 10, lr 0.2 (as the split-mnist-der-functional section).
    split) bench --stream split-mnist --protocol der --batch 10 --replay-batch 10 \
             --json "$out/split-mnist-der-defaults.json" --write-benchmarks split-mnist-der-defaults ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
