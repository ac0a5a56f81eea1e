"""The fit sweep: for each replay batch, the largest buffer that fits both the byte and the latency budget.

Monotone by construction: a setting's latency is the largest upper bound measured at it or at any setting with
a smaller-or-equal replay batch and buffer (a running max), so a larger setting never reads cheaper than a
smaller one and "replay 0 no, replay 128 yes" cannot be printed. The buffer size is searched, not taken from a
list: the byte budget's largest buffer is found exactly (bisection over ``OnlineLearner.required_bytes``), and
when it is too slow, a bisection over buffer sizes finds the largest that meets the latency budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge_cl.bench.budget_fit import FitConfig, Measure, default_measure, run_fit, summarize
from edge_cl.bench.runner import build_model

SWEEP_REPLAY = (1, 2, 5, 10, 20, 32, 64, 128)
_MAX_SAMPLES = 1 << 40  # a cap on the doubling, far beyond any byte budget


class MonotoneCost:
    """Latencies measured at (replay, buffer) settings; a setting's cost is the max over the settings it covers."""

    def __init__(self) -> None:
        self.points: dict[tuple[int, int], float] = {}

    def add(self, replay: int, buffer: int, ms: float) -> None:
        """Record one measured upper bound (ms); a repeated setting keeps the larger value."""
        self.points[(replay, buffer)] = max(ms, self.points.get((replay, buffer), ms))

    def cost(self, replay: int, buffer: int) -> float | None:
        """The largest measurement at a setting no larger than (replay, buffer) in both; None if none is."""
        covered = [v for (r, n), v in self.points.items() if r <= replay and n <= buffer]
        return max(covered, default=None)


def largest_within(required: Callable[[int], int], budget: int) -> int | None:
    """The largest n with ``required(n) <= budget`` for a nondecreasing ``required``; None if not even n = 0."""
    if required(0) > budget:
        return None
    lo, hi = 0, 1
    while required(hi) <= budget:     # doubling: the byte budget bounds the buffer, no list of sizes needed
        lo, hi = hi, hi * 2
        if hi > _MAX_SAMPLES:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if required(mid) <= budget else (lo, mid)
    return lo


def _cap_by_smaller_replay(rows: list[dict[str, Any]], costs: MonotoneCost) -> None:
    """A larger replay batch never fits a larger buffer (bytes and latency both grow with it); the bisection's
    tolerance could say otherwise, so the last row's buffer is capped at the one before it."""
    prev = next((row for row in reversed(rows[:-1]) if row["latency_fits"]), None)
    row = rows[-1]
    if prev is None or not row["latency_fits"] or row["largest_buffer_that_fits"] <= prev["largest_buffer_that_fits"]:
        return
    n = prev["largest_buffer_that_fits"]
    row.update({"largest_buffer_that_fits": n, "latency_ms_p99_upper": costs.cost(row["replay_batch"], n),
                "note": f"capped at replay {prev['replay_batch']}'s buffer: a larger replay batch never fits more"})


def run_sweep(fit: FitConfig, steps: int = 200, replay: tuple[int, ...] = SWEEP_REPLAY,
              measure: Measure | None = None, tolerance: float = 0.02) -> dict[str, Any]:
    """The plain fit, then per replay batch the largest buffer within both budgets, and the largest pair.

    The buffer bisection stops when the bracket is within ``tolerance`` of its upper end (2%: a few timed
    configurations per replay batch rather than a dozen).
    """
    from edge_cl.learner import OnlineLearner
    from edge_cl.learner_config import LearnerConfig

    measure = measure or default_measure(fit, steps)
    base = run_fit(fit, steps, measure)
    budget = int(fit.learner["budget_bytes"])
    if not LearnerConfig.model_validate(dict(fit.learner, replay_batch=1)).uses_buffer():
        base.update({"sweep": [], "best": None,
                     "sweep_note": f"method {fit.learner.get('method')} keeps no replay buffer: nothing to sweep"})
        return base
    model = build_model(fit.model, 0)
    req_kw = {k: v for k, v in fit.learner.items() if k not in ("budget_bytes", "replay_batch", "device")}
    costs = MonotoneCost()
    # The plain fit already timed the configured setting: the sweep reuses it, so its row and the verdict above
    # it come from one measurement and cannot disagree.
    timed: dict[tuple[int, int], dict[str, Any]] = {}
    r_cfg = int(fit.learner.get("replay_batch") or 1)
    n_cfg = largest_within(lambda n: OnlineLearner.required_bytes(model, buffer_samples=n, replay_batch=r_cfg,
                                                                  **req_kw), budget)
    if base.get("measured") and n_cfg is not None:  # the configured budget holds exactly n_cfg samples
        timed[(r_cfg, n_cfg)] = base["measured"]
        costs.add(r_cfg, n_cfg, base["measured"]["latency_ms_p99_upper"])
    rows: list[dict[str, Any]] = []
    too_slow_from: int | None = None
    # Replay 0 would be another method (one without replay), which no setting may switch to: swept from 1.
    for r in sorted({x for x in (*replay, r_cfg) if x > 0}):
        def required(n: int, r: int = r) -> int:
            return OnlineLearner.required_bytes(model, buffer_samples=n, replay_batch=r, **req_kw)

        n_max = largest_within(required, budget)
        row: dict[str, Any] = {"replay_batch": r, "buffer_within_bytes": n_max, "largest_buffer_that_fits": None,
                               "latency_fits": False, "latency_ms_p99_upper": None, "predict_ms_p99": None,
                               "tried": []}
        rows.append(row)
        if n_max is None or n_max < r:
            row["note"] = "the byte budget holds no buffer of this replay batch"
            continue
        if too_slow_from is not None:
            row["note"] = (f"not timed: replay {too_slow_from} already exceeds the latency budget at its smallest "
                           "buffer, and a larger setting never costs less")
            continue

        def fits(n: int, r: int = r, row: dict[str, Any] = row) -> bool:
            s = timed.get((r, n))
            if s is None:
                kw = dict(fit.learner, replay_batch=r, budget_bytes=required(n))
                s = timed[(r, n)] = summarize(measure(kw), fit.confidence)
                costs.add(r, n, s["latency_ms_p99_upper"])
            eff = costs.cost(r, n)
            row["tried"].append({"buffer": n, "measured_ms": s["latency_ms_p99_upper"], "effective_ms": eff})
            ok = eff is not None and eff <= fit.latency_budget_ms
            if ok and (row["largest_buffer_that_fits"] is None or n > row["largest_buffer_that_fits"]):
                row.update({"largest_buffer_that_fits": n, "latency_ms_p99_upper": eff,
                            "predict_ms_p99": s["predict_ms_p99"], "latency_fits": True})
            elif not ok and row["latency_ms_p99_upper"] is None:
                row["latency_ms_p99_upper"] = eff
            return ok

        if not fits(n_max):
            lo, hi = r, n_max                 # the smallest buffer a replay batch of r can draw from
            if not fits(lo):
                too_slow_from = r
                continue
            while hi - lo > max(1, int(tolerance * hi)):
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        _cap_by_smaller_replay(rows, costs)
    fitting = [row for row in rows if row["latency_fits"]]
    best = max(fitting, key=lambda row: (row["largest_buffer_that_fits"], row["replay_batch"]), default=None)
    base.update({"sweep": rows, "best": best, "sweep_tolerance": tolerance})
    return base
