#!/usr/bin/env bash
# How much each importance method remembers per byte (issue #10): er, er+ewc and er+mas under ONE byte budget,
# the total that er+ewc / er+mas use at the bytes of 500 float32 samples (3,364,200 B: 500 samples plus their
# float32 omega, running estimate and anchor), so er spends on buffer what they spend on importance state; and
# again with that state in bfloat16 (state_dtype), which leaves their buffer more. Reported seeds 0-2 on the
# three image streams; sections `<stream>-same-bytes[-bf16]` and the paired table `importance-same-bytes`.
# One lane (about 12 minutes on 2 cores). Usage: benchmarks/importance_same_bytes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
r=benchmarks/results
mkdir -p "$r"
bytes=3364200
files=()
for s in gradual-rotation:0.3 permuted-mnist:0.1 rotated-mnist:0.1; do
  IFS=: read -r stream scale <<< "$s"
  edge-cl bench --stream "$stream" --methods er,er+ewc,er+mas --budget-bytes $bytes --scale "$scale" --seed 0 \
    --repeat 3 --threads 1 --json "$r/$stream-same-bytes.json" --write-benchmarks "$stream-same-bytes" > /dev/null
  edge-cl bench --stream "$stream" --methods er,er+ewc,er+mas --budget-bytes $bytes --scale "$scale" --seed 0 \
    --repeat 3 --threads 1 --method-param state_dtype=bfloat16 --json "$r/$stream-same-bytes-bf16.json" \
    --write-benchmarks "$stream-same-bytes-bf16" > /dev/null
  files+=("$r/$stream-same-bytes.json" "$r/$stream-same-bytes-bf16.json")
done
python3 benchmarks/summary.py "${files[@]}" --write-benchmarks --section importance-same-bytes \
  --title "er, er+ewc and er+mas under one byte budget (3,364,200 B), importance state in float32 or bfloat16 (issue #10)"
