#!/usr/bin/env bash
# Full-protocol benchmarks (DER / mammoth protocol and the edge default); every number goes into
# BENCHMARKS.md through `edge-cl bench --write-benchmarks`, then targets.py compares them with the targets.
# Usage: benchmarks/der_protocol.sh [STAGE...]
#   stages: rotated permuted seeds-rotated seeds-permuted split elec2 edge targets (default: all of them)
# Extra edge-cl bench options can be given in $BENCH_OPTS (e.g. BENCH_OPTS="--repeat 3").
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
methods=sgd,er,ewc,mas,er+ewc,er+mas,joint
# shellcheck disable=SC2086
bench() { edge-cl bench --budget-samples 500 ${BENCH_OPTS:-} "$@"; }

domain() {  # $1 = stream; DER protocol with float32 storage, then the same bytes with uint8 storage
  bench --stream "$1" --protocol der --methods "$methods" --json "$out/$1-der.json" --plots "$out/$1-der" \
    --write-benchmarks "$1-der"
  bench --stream "$1" --protocol der --methods er,er+ewc,er+mas --storage uint8 --json "$out/$1-der-uint8.json" \
    --plots "$out/$1-der-uint8" --write-benchmarks "$1-der-uint8"
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(rotated permuted seeds-rotated seeds-permuted split elec2 edge targets)
for stage in "${stages[@]}"; do
  case "$stage" in
    rotated) domain rotated-mnist ;;
    permuted) domain permuted-mnist ;;
    # DER's own split (seq-mnist) protocol for ER is batch 10, replay 10, lr 0.1: our `edge` protocol.
    split) for protocol in der edge; do
             bench --stream split-mnist --protocol "$protocol" --methods "$methods" \
               --json "$out/split-mnist-$protocol.json" --plots "$out/split-mnist-$protocol" \
               --write-benchmarks "split-mnist-$protocol"
           done ;;
    split-edge) bench --stream split-mnist --protocol edge --methods "$methods" --json "$out/split-mnist-edge.json" \
                  --plots "$out/split-mnist-edge" --write-benchmarks split-mnist-edge ;;
    # One sample per step, as river's peers learn and as a sensor stream arrives.
    elec2) bench --stream elec2 --batch 1 --methods sgd,er,ewc,mas,er+ewc,er+mas,no-change \
             --peers logreg,hat,arf --json "$out/elec2.json" --plots "$out/elec2" --write-benchmarks elec2 ;;
    edge) for s in rotated-mnist permuted-mnist; do
            bench --stream "$s" --protocol edge --methods "$methods" --json "$out/$s-edge.json" \
              --plots "$out/$s-edge" --write-benchmarks "$s-edge"
          done ;;
    seeds-rotated|seeds-permuted)  # seeds 1..3 of sgd and er (seed 0 is the single-seed run above)
      s="${stage#seeds-}-mnist"
      bench --stream "$s" --protocol der --methods sgd,er --no-bare --repeat 3 --seed 1 \
        --json "$out/$s-der-seeds.json" --write-benchmarks "$s-der-seeds" ;;
    targets) python benchmarks/targets.py "$out" ;;
    *) echo "unknown stage $stage (see the usage line at the top)" >&2; exit 2 ;;
  esac
done
