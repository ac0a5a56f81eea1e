"""The configuration benchmarks/gen_replay.sh reports: of those tried on validation seeds 100 and 101, the one whose
ACC (task streams; prequential accuracy on streams without tasks) is furthest ahead of er's at its equal-bytes budget
(or trails it least), averaged over the two seeds.

    python benchmarks/gen_replay_pick.py RESULTS_DIR STREAM CONFIG [CONFIG ...]

PICK_METHOD (default gen-replay) and PICK_SEEDS (default 100,101) pick for another method (benchmarks/latent_replay.sh).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SEEDS = tuple(int(v) for v in os.environ.get("PICK_SEEDS", "100,101").split(","))
METHOD = os.environ.get("PICK_METHOD", "gen-replay")


def gap(path: Path) -> float:
    """The method's score minus er's in one validation run."""
    runs = json.loads(path.read_text())["methods"]
    key = "acc" if runs["er"].get("acc") is not None else "prequential_acc"
    return float(runs[METHOD][key]) - float(runs["er"][key])


def main(argv: list[str]) -> None:
    folder, stream, configs = Path(argv[0]), argv[1], argv[2:]
    gaps = {c: [gap(folder / f"val-{stream}-{c}-s{s}.json") for s in SEEDS] for c in configs}
    for c, g in gaps.items():
        seeds = ", ".join(f"{100 * x:+.2f}" for x in g)
        print(f"{stream}: {c}: {METHOD} - er = {100 * sum(g) / len(g):+.2f} points (validation seeds "
              f"{', '.join(map(str, SEEDS))}: {seeds})", file=sys.stderr)
    print(max(gaps, key=lambda c: sum(gaps[c])))


if __name__ == "__main__":
    main(sys.argv[1:])
