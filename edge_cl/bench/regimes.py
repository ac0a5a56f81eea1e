"""Per-regime accuracy of a prequential pass over a stream whose regimes (labelling rules) come back.

Reports, for each visit of a regime, its prequential accuracy, and for a returning regime the accuracy over
its first ``head`` samples beside the accuracy over the last ``head`` samples of its previous visit (what the
learner still knew when it left), so "re-recognised faster than re-learned" is one difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _mean(a: np.ndarray) -> float | None:
    return float(a.mean()) if len(a) else None


def regime_report(correct: Sequence[bool] | np.ndarray, bounds: Sequence[int], names: Sequence[str],
                  head: int = 200) -> dict[str, Any]:
    """Per-visit accuracy of ``correct`` cut at ``bounds`` (``len(names) + 1`` sample indices, 0 ... N).

    ``names[i]`` is the regime of visit i (equal names are the same labelling rule). A truncated stream
    (fewer samples than ``bounds[-1]``) is scored on what it has.
    """
    c = np.asarray(correct, dtype=bool)
    if len(bounds) != len(names) + 1 or list(bounds) != sorted(bounds) or bounds[0] != 0:
        raise ValueError(f"bounds={list(bounds)} must rise from 0 with one more entry than names={list(names)}")
    if head < 1:
        raise ValueError(f"head={head} must be >= 1: the number of samples scored at a visit's start and end")
    visits: list[dict[str, Any]] = []
    last_end: dict[str, float | None] = {}
    for i, name in enumerate(names):
        seg = c[bounds[i]:bounds[i + 1]]
        v: dict[str, Any] = {"regime": name, "start": int(bounds[i]), "samples": len(seg), "acc": _mean(seg),
                             "first_acc": _mean(seg[:head]), "last_acc": _mean(seg[-head:])}
        if name in last_end:
            v["previous_end_acc"] = last_end[name]
            gap = None if v["first_acc"] is None or last_end[name] is None else v["first_acc"] - last_end[name]
            v["return_gap"] = gap  # first `head` of the return minus the end of the previous visit
        last_end[name] = v["last_acc"]
        visits.append(v)
    first_visits = [v["acc"] for v in visits[1:] if v["acc"] is not None and "previous_end_acc" not in v]
    returns = [v["return_gap"] for v in visits if v.get("return_gap") is not None]
    return {"head": head, "visits": visits,
            "new_regime_acc": float(np.mean(first_visits)) if first_visits else None,
            "return_gap": float(np.mean(returns)) if returns else None}


def _cell(vals: list[float | None], signed: bool = False) -> str:
    xs = [v for v in vals if v is not None]
    if not xs:
        return "-"
    mean = f"{np.mean(xs) * 100:+.2f}" if signed else f"{np.mean(xs) * 100:.2f}"
    return f"{mean} ± {np.std(xs) * 100:.2f}" if len(xs) > 1 else mean


def regimes_table(methods: dict[str, dict[str, Any]]) -> str:
    """Markdown table of each method's per-visit accuracy and return gap, mean ± std over its seeds."""
    rows = {m: [run["regimes"] for run in (r.get("runs") or [r]) if run.get("regimes")] for m, r in methods.items()}
    rows = {m: reps for m, reps in rows.items() if reps}
    if not rows:
        return ""
    first = next(iter(rows.values()))[0]
    names = [f"{v['regime']} (visit {i + 1}) %" for i, v in enumerate(first["visits"])]
    h = first["head"]
    head = ["method", *names, f"return: first {h} %", "previous visit: last %", "return gap pts"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, reps in rows.items():
        cells = [m] + [_cell([rep["visits"][i]["acc"] for rep in reps]) for i in range(len(names))]
        ret = [[v for v in rep["visits"] if "previous_end_acc" in v] for rep in reps]
        cells += [_cell([float(np.mean([v["first_acc"] for v in r])) if r else None for r in ret]),
                  _cell([float(np.mean([v["previous_end_acc"] for v in r])) if r else None for r in ret]),
                  _cell([rep["return_gap"] for rep in reps], signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
