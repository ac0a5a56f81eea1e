#!/usr/bin/env bash
# How LearnerConfig.max_grad_norm's default (5) was chosen: er and der++ on validation seeds (100 and up, never
# the reported seeds 0-2) of every bench stream, with the learner's bound at the value given and at the old
# default 1000. JSON results go to benchmarks/results/val-mgn/ (compare the `acc` / `prequential_acc` fields).
# Usage: benchmarks/validate_max_grad_norm.sh [VALUE ...]   (default: 1000 2 5 10 20 on split-mnist, 1000 5 elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/val-mgn
mkdir -p "$o"
run() { edge-cl bench --budget-samples 500 --no-bare --threads 1 "$@" > /dev/null; }
split_values=("${@:-1000 2 5 10 20}")
for g in ${split_values[*]}; do
  run --stream split-mnist --methods er,der++ --protocol der --batch 10 --replay-batch 10 --storage uint8 \
    --seed 100 --repeat 3 --max-grad-norm "$g" --json "$o/split-mgn$g.json"
done
for g in ${*:-1000 5}; do
  run --stream rotated-mnist --methods er,der++ --protocol der --storage uint8 --scale 0.2 --seed 100 \
    --max-grad-norm "$g" --json "$o/rotated-mgn$g.json"
  run --stream permuted-mnist --methods er,der++ --protocol der --storage uint8 --scale 0.2 --seed 100 \
    --max-grad-norm "$g" --json "$o/permuted-mgn$g.json"
  run --stream gradual-rotation --methods er,der++ --scale 0.3 --seed 100 --repeat 2 --max-grad-norm "$g" \
    --json "$o/gradual-mgn$g.json"
  run --stream elec2 --methods er,der++ --batch 1 --replay-batch 10 --standardize --seed 100 --max-grad-norm "$g" \
    --json "$o/elec2-mgn$g.json"
  for s in sea agrawal rbf; do
    run --stream "$s" --methods er,der++ --seed 100 --repeat 2 --max-grad-norm "$g" --json "$o/$s-mgn$g.json"
  done
done
python3 - "$o" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    d = json.loads(f.read_text()); key = "acc" if d["stream"].get("kind") == "tasks" else "prequential_acc"
    print(f.stem, {m: round(100 * r[key], 2) for m, r in d["methods"].items()})
PY
