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
