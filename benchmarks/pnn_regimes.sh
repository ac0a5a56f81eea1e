#!/usr/bin/env bash
# Method pnn (issue #23) on the conflicting-regimes stream. validate: a grid of its settings on validation seeds 100-101
# (never the reported seeds 0-2), sgd / der++ / contexts beside; section conflicting-regimes-pnn-validation. report:
# the chosen settings (highest validation prequential accuracy, benchmarks/pnn_regimes.py pick) on seeds 0-2 against
# der++, contexts and sgd at equal bytes (every method gets what pnn needs with a 500-sample buffer); section
# conflicting-regimes-pnn. Usage: benchmarks/pnn_regimes.sh [validate|report ...]
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/pnn
mkdir -p "$o"
bench() { python -m edge_cl.cli.main bench --stream conflicting-regimes --device cpu --threads 1 "$@"; }
val() { name=$1; shift; [ -f "$o/$name.json" ] || bench --seed 100 --repeat 2 --json "$o/$name.json" "$@" > /dev/null; }
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(validate report)
for stage in "${stages[@]}"; do
  if [ "$stage" = validate ]; then
    val baselines --methods sgd,der++,contexts
    for lat in all head; do for init in copy random; do for w in 1 3; do for beta in 1.0 0.5 0; do
      val "pnn-$lat-$init-w$w-b$beta-s1.0" --methods pnn --method-param column_laterals=$lat \
        --method-param column_init=$init --method-param column_window=$w --method-param column_beta=$beta \
        --method-param column_lateral_scale=1.0
    done; done; done; done
    # The laterals' scale, tried on the best family of the grid above (copy, window 1, beta 0.5 or 0).
    for lat in all head; do for beta in 0.5 0; do for scale in 0.3 0.1; do
      val "pnn-$lat-copy-w1-b$beta-s$scale" --methods pnn --method-param column_laterals=$lat \
        --method-param column_init=copy --method-param column_window=1 --method-param column_beta=$beta \
        --method-param column_lateral_scale=$scale
    done; done; done
    val pnn-head-copy-w1-b0.5-s1.0-nokeep --methods pnn --method-param column_laterals=head \
      --method-param column_init=copy --method-param column_window=1 --method-param column_beta=0.5 \
      --method-param column_lateral_scale=1.0 --method-param column_keep_good=false
    # pnn with another method's replay (every buffered sample's label or logits, contradicting ones included).
    val combos-head-copy-w1-b0.5-s0.3 --methods er+pnn,der+++pnn --method-param column_laterals=head \
      --method-param column_init=copy --method-param column_window=1 --method-param column_beta=0.5 \
      --method-param column_lateral_scale=0.3
    python benchmarks/pnn_regimes.py section "$o"/baselines.json "$o"/combos-*.json "$o"/pnn-*.json \
      --write-benchmarks > /dev/null
  else
    chosen=$(python benchmarks/pnn_regimes.py pick "$o"/pnn-*.json)
    # shellcheck disable=SC2086
    bytes=$(python benchmarks/pnn_regimes.py budget $chosen)
    # shellcheck disable=SC2086
    bench --methods pnn,contexts,der++,sgd $chosen --budget-bytes "$bytes" --seed 0 --repeat 3 \
      --json "$o/conflicting-regimes-pnn.json" --write-benchmarks conflicting-regimes-pnn > /dev/null
  fi
done
