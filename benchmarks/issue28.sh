#!/usr/bin/env bash
# The CPU figures issue #28 ("Any model, one step") asks for, written into BENCHMARKS.md by the tools:
#   startup        import edge_cl + the default learner, beyond import torch (target <= 0.5 s)
#   versus         er / der++ step time against the commit the issue started from, one interleaved run
#   engines        learner_overhead.py on each engine: closed form (default), autograd, fixed-shape (uncaptured)
#   models         model_axis_cost.py: every method x every zoo model, 2,000 steps, with a bare eager loop
# Usage: benchmarks/issue28.sh [STAGE...]   (default: all; run on a quiet machine: they time steps)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${EDGE_CL_ISSUE28_BASE:-d41ae51}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(startup versus engines models)
for stage in "${stages[@]}"; do
  case "$stage" in
    startup) python benchmarks/startup.py --repeat 7 --write-benchmarks ;;
    versus) python benchmarks/versus_commit.py --base "$base" --methods er,der++ --rounds 9 --steps 400 \
              --write-benchmarks ;;
    engines) python benchmarks/learner_overhead.py --steps 3000 --methods er,der++,er+ewc,er+mas
             python benchmarks/learner_overhead.py --steps 3000 --methods er,der++,er+ewc,er+mas --autograd
             python benchmarks/learner_overhead.py --steps 3000 --methods er,der++,er+ewc,er+mas --step-mode fixed ;;
    models) python benchmarks/model_axis_cost.py --steps 2000 ;;
    *) echo "unknown stage $stage (startup versus engines models)" >&2; exit 2 ;;
  esac
done
