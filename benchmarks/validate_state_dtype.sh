#!/usr/bin/env bash
# How the importance methods' default state_dtype was chosen (issue #10, item 3: compact importance state so the
# buffer gets more): er, er+ewc and er+mas under ONE byte budget per stream -- what er+ewc uses at the bytes of
# 500 float32 samples with float32 state -- with omega and the running estimate stored in float32, bfloat16 or
# float16, so the compact dtypes leave the buffer more samples. Validation seeds only (100 and up, never the
# reported 0-2); the inputs standardised on the drift streams (the daemon's default for vector inputs). JSON goes
# to benchmarks/results/val-dtype/; the paired table into BENCHMARKS.md (section state-dtype-validation). Two
# lanes side by side, one torch thread each (about 15 minutes on 2 cores).
# Usage: benchmarks/validate_state_dtype.sh
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/val-dtype
mkdir -p "$o"
dtypes=(float32 bfloat16 float16)
run() { edge-cl bench --methods er,er+ewc,er+mas --no-bare --threads 1 --seed 100 "$@" > /dev/null; }
images() {
  for d in "${dtypes[@]}"; do
    run --stream gradual-rotation --scale 0.3 --repeat 6 --budget-bytes 3364200 --method-param state_dtype=$d \
      --json "$o/gradual-$d.json"
    run --stream permuted-mnist --scale 0.1 --repeat 3 --budget-bytes 3364200 --method-param state_dtype=$d \
      --json "$o/permuted-$d.json"
  done
}
drift() {
  for d in "${dtypes[@]}"; do
    for s in sea:224096 agrawal:248192 rbf:252208; do
      IFS=: read -r stream bytes <<< "$s"
      run --stream "$stream" --repeat 3 --standardize --budget-bytes "$bytes" --method-param state_dtype=$d \
        --json "$o/$stream-$d.json"
    done
    run --stream elec2 --batch 1 --replay-batch 1 --standardize --budget-bytes 324056 \
      --method-param state_dtype=$d --json "$o/elec2-$d.json"
  done
}
images & lane=$!
drift
wait "$lane"
files=()
for name in gradual permuted sea agrawal rbf elec2; do
  for d in "${dtypes[@]}"; do files+=("$o/$name-$d.json"); done
done
python3 benchmarks/summary.py "${files[@]}" --write-benchmarks --section state-dtype-validation \
  --title "Importance state in float32, bfloat16 or float16 under one byte budget, on validation seeds (issue #10; seeds 100+, never the reported ones)"
