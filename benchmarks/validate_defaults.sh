#!/usr/bin/env bash
# How the learner's input defaults (LearnerConfig.standardize, LearnerConfig.storage) were chosen (issue #28 item 5):
# der++ (the default method) on validation seeds (100-102, never the reported seeds 0-2) of every bench stream,
# raw or standardised inputs x float32 / float16 / uint8 buffer storage, all at ONE byte budget per stream (the
# bytes der++ gets for 500 float32 samples with raw inputs, so the standardiser's statistics come out of the buffer).
# JSON results go to benchmarks/results/val-defaults/; `summary` writes the section `defaults-validation`.
# Usage: benchmarks/validate_defaults.sh [images|tabular|fashion|summary ...]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/val-defaults
mkdir -p "$o"
run() { python -m edge_cl.cli.main bench --methods der++ --no-bare --threads 1 --seed 100 --repeat 3 "$@" > /dev/null; }
# The five input settings: name and the options that set them.
variants=("f32-raw:--no-standardize --storage float32" "f32-std:--standardize --storage float32"
          "f16-raw:--no-standardize --storage float16" "f16-std:--standardize --storage float16"
          "u8-raw:--no-standardize --storage uint8")
each() {  # $1 = name stem, $2 = budget bytes, rest = stream options
  local stem=$1 bytes=$2; shift 2
  for v in "${variants[@]}"; do
    # shellcheck disable=SC2086
    run "$@" --budget-bytes "$bytes" ${v#*:} --json "$o/$stem-${v%%:*}.json"
  done
}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(images tabular fashion summary)
for stage in "${stages[@]}"; do
  case "$stage" in
    images)
      each rotated 2288880 --stream rotated-mnist --protocol der --scale 0.3
      each permuted 2288880 --stream permuted-mnist --protocol der --scale 0.3 ;;
    tabular)
      each split 2288880 --stream split-mnist --protocol der --batch 10 --replay-batch 10
      each gradual 2288880 --stream gradual-rotation --scale 0.3
      each sea 95616 --stream sea
      each agrawal 112416 --stream agrawal
      each rbf 115216 --stream rbf
      each elec2 104016 --stream elec2 --batch 1 --replay-batch 10 ;;
    fashion)  # split-mnist on Fashion-MNIST (rows 9-53% zeros): does standardising images hurt there too?
      for v in "f16-raw:--no-standardize" "f16-std:--standardize"; do
        # shellcheck disable=SC2086
        run --stream split-mnist --images fashion-mnist --protocol der --batch 10 --replay-batch 10 \
          --budget-bytes 2288880 --storage float16 ${v#*:} --json "$o/split-fashion-${v%%:*}.json"
      done ;;
    summary)
      python benchmarks/defaults_table.py "$o" --write-benchmarks ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
