"""A latency verdict with a stated confidence: the upper end of a bootstrap interval of p99 over k repeats.

One timed run's p99 swings with whatever else the machine does (1.7 / 6.5 / 4.3 ms in three identical runs on a
shared 2-core host), so a verdict on it flips. Here each configuration is timed as ``k`` repeats; the bootstrap
resamples the repeats (which captures the run-to-run swing) and the steps inside each chosen repeat, computes p99
of every resample, and the verdict compares the ``confidence`` quantile of those p99s with the budget. The
resampling generator has a fixed seed, so the same timings always give the same verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_REPEATS = 5
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000


def check_settings(repeats: int, confidence: float) -> None:
    """Raise ValueError naming the option when ``repeats`` or ``confidence`` cannot give a meaningful bound."""
    if repeats < 1:
        raise ValueError(f"--repeats {repeats} must be >= 1 (3 or more lets the bound see run-to-run swings)")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"--confidence {confidence} must be in [0.5, 1), e.g. 0.95")


def p99_bound(repeats: Sequence[Sequence[float]], confidence: float = DEFAULT_CONFIDENCE,
              resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """p99 (ms) of ``repeats`` (seconds, one list per repeat, equal lengths) with its one-sided upper bound.

    Returns ``p99`` (all repeats pooled), ``p99_upper`` (the ``confidence`` quantile of the two-stage bootstrap),
    ``p99_per_repeat``, ``p50``, ``repeats`` (k) and ``confidence``.
    """
    check_settings(len(repeats), confidence)
    lengths = {len(r) for r in repeats}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"every repeat needs the same, non-zero number of timings; got lengths {sorted(lengths)}")
    ms = np.asarray(repeats, dtype=np.float64) * 1e3            # [k, n]
    k, n = ms.shape
    rng = np.random.default_rng(seed)
    uppers = np.empty(resamples)
    chunk = max(1, 2_000_000 // (k * n))                        # bounds the resample array to ~16 MB
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        which = rng.integers(0, k, (m, k))                      # stage 1: repeats, with replacement
        steps = rng.integers(0, n, (m, k, n))                   # stage 2: steps inside each chosen repeat
        drawn = ms[which[:, :, None], steps].reshape(m, k * n)
        uppers[start:start + m] = np.percentile(drawn, 99, axis=1)
    return {"p99": float(np.percentile(ms, 99)), "p50": float(np.percentile(ms, 50)),
            "p99_upper": float(np.quantile(uppers, confidence)),
            "p99_per_repeat": [float(v) for v in np.percentile(ms, 99, axis=1)],
            "repeats": k, "steps_per_repeat": n, "confidence": confidence}


def latency_verdict(bound: dict[str, Any], budget_ms: float) -> bool:
    """True when the upper bound of p99 is within ``budget_ms``: a fit holds at the stated confidence."""
    return bound["p99_upper"] <= budget_ms
