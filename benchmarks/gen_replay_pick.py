"""The gen_rank benchmarks/gen_replay.sh reports: of the ranks tried on validation seed 100, the one whose ACC
(task streams; prequential accuracy on streams without tasks) trails er's least at its equal-bytes budget.

    python benchmarks/gen_replay_pick.py RESULTS_DIR STREAM RANK [RANK ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def gap(path: Path) -> float:
    """gen-replay's score minus er's in one validation run."""
    runs = json.loads(path.read_text())["methods"]
    key = "acc" if runs["er"].get("acc") is not None else "prequential_acc"
    return float(runs["gen-replay"][key]) - float(runs["er"][key])


def main(argv: list[str]) -> None:
    folder, stream, ranks = Path(argv[0]), argv[1], argv[2:]
    gaps = {r: gap(folder / f"val-{stream}-r{r}.json") for r in ranks}
    for r, g in gaps.items():
        print(f"{stream}: gen_rank {r}: gen-replay - er = {100 * g:+.2f} points (validation seed 100)", file=sys.stderr)
    print(max(gaps, key=lambda r: gaps[r]))


if __name__ == "__main__":
    main(sys.argv[1:])
