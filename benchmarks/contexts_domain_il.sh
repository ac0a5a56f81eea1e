#!/usr/bin/env bash
# Task-free contexts on the domain-IL and class-IL image streams (issue #23 target: the best context method within
# 0.5 points of der++, or better; else der++ stays the default and docs/methods.md says when to choose which).
# Same protocol and budget as the *-der-defaults sections (DER's protocol, 500 float32 samples of bytes), with
# der++, contexts and der++ + contexts in one run. contexts keeps the settings chosen on validation seeds of the
# conflicting-regimes stream: nothing is tuned on these streams. Sections: <stream>-contexts; <stream>-contexts-active
# runs der++ + contexts with context_replay = "active" (DER++'s replay through the predicting head, not each row's own).
# Usage: [ONLY=stream] [SCALE=fraction] benchmarks/contexts_domain_il.sh (SCALE, default 1: the share of each task's
# samples, as --scale). Every section was run at SCALE=1 (split-mnist and rotated-mnist, then permuted-mnist with
# ONLY=permuted-mnist on 2026-12-05: about 25 minutes on a shared 2-core machine, at nice 19).
set -euo pipefail
cd "$(dirname "$0")/.."
o=benchmarks/results/contexts-domain-il
mkdir -p "$o"
streams=("split-mnist:--batch 10 --replay-batch 10 --lr 0.1"
         "rotated-mnist:--lr 0.2"
         "permuted-mnist:--lr 0.2")
for s in "${streams[@]}"; do
  IFS=: read -r name opts <<< "$s"
  [ -n "${ONLY:-}" ] && [ "$name" != "$ONLY" ] && continue
  opts="$opts --scale ${SCALE:-1}"
  # shellcheck disable=SC2086
  python -m edge_cl.cli.main bench --stream "$name" --methods der++,contexts,der+++contexts --budget-samples 500 \
    --protocol der $opts --seed 0 --repeat 3 --no-bare --threads 1 --json "$o/$name.json" \
    --write-benchmarks "$name-contexts"
  # shellcheck disable=SC2086
  python -m edge_cl.cli.main bench --stream "$name" --methods der+++contexts --method-param context_replay=active \
    --budget-samples 500 --protocol der $opts --seed 0 --repeat 3 --no-bare --threads 1 \
    --json "$o/$name-active.json" --write-benchmarks "$name-contexts-active"
done
