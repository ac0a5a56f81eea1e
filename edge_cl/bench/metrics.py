"""Continual-learning metrics from an accuracy matrix, plus prequential and latency summaries.

``R[i][j]`` is the accuracy on task j after learning tasks 0..i (T x T); ``b[j]`` the accuracy of the
untrained model on task j. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _matrix(r: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    m = np.asarray(r, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {m.shape}")
    return m


def acc(r: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Average accuracy at the end: mean_j R[T-1][j]."""
    m = _matrix(r)
    return float(m[-1].mean())


def bwt(r: Sequence[Sequence[float]] | np.ndarray) -> float | None:
    """Backward transfer: mean_{j<T-1} (R[T-1][j] - R[j][j]); negative means forgetting. None when T == 1."""
    m = _matrix(r)
    t = m.shape[0]
    if t < 2:
        return None
    return float(np.mean([m[-1, j] - m[j, j] for j in range(t - 1)]))


def fwt(r: Sequence[Sequence[float]] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Forward transfer: mean_{j>0} (R[j-1][j] - b[j]). None when T == 1."""
    m = _matrix(r)
    base = np.asarray(b, dtype=np.float64)
    t = m.shape[0]
    if base.shape != (t,):
        raise ValueError(f"baseline accuracies b must have one entry per task ({t}), got shape {base.shape}")
    if t < 2:
        return None
    return float(np.mean([m[j - 1, j] - base[j] for j in range(1, t)]))


def forgetting(r: Sequence[Sequence[float]] | np.ndarray) -> float | None:
    """Average forgetting: mean_{j<T-1} max_{i<T-1} (R[i][j] - R[T-1][j]). None when T == 1."""
    m = _matrix(r)
    t = m.shape[0]
    if t < 2:
        return None
    return float(np.mean([np.max(m[: t - 1, j] - m[-1, j]) for j in range(t - 1)]))


def summarize_matrix(r: Sequence[Sequence[float]] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """ACC, BWT, FWT and forgetting in one dict."""
    return {"acc": acc(r), "bwt": bwt(r), "fwt": fwt(r, b), "forgetting": forgetting(r)}


def prequential_accuracy(correct: Sequence[bool] | np.ndarray) -> float | None:
    """Fraction of samples predicted right before learning from them; None for an empty stream."""
    c = np.asarray(correct, dtype=np.float64)
    return float(c.mean()) if c.size else None


def windowed_accuracy(correct: Sequence[bool] | np.ndarray, window: int) -> np.ndarray:
    """Accuracy over consecutive windows of ``window`` samples (the last window may be shorter)."""
    if window <= 0:
        raise ValueError(f"window={window} must be a positive number of samples")
    c = np.asarray(correct, dtype=np.float64)
    return np.array([c[i: i + window].mean() for i in range(0, len(c), window)])


def latency_summary(seconds: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """p50 / p99 / mean latency in milliseconds (None when nothing was timed)."""
    s = np.asarray(seconds, dtype=np.float64) * 1e3
    if s.size == 0:
        return {"latency_ms_p50": None, "latency_ms_p99": None, "latency_ms_mean": None}
    return {"latency_ms_p50": float(np.percentile(s, 50)), "latency_ms_p99": float(np.percentile(s, 99)),
            "latency_ms_mean": float(s.mean())}


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and (population) std over seeds, ignoring None; (None, None) if nothing is left."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), float(v.std())
