"""The delayed-label join: unlabeled samples wait (bounded in count and time) for a label by id.

Both sides are bounded, so a storm of labels for ids that never come costs memory up to ``early_labels`` and no
more; what the bounds push out is reported (samples returned to the caller, labels through ``on_label_dropped``)
so that the daemon counts every eviction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pending:
    """An unlabeled sample waiting for its label."""

    seq: int
    id: str
    x: np.ndarray
    arrived: float


class LabelJoin:
    """Holds unlabeled samples and early labels; both bounded, oldest evicted first."""

    def __init__(self, window_samples: int, window_s: float, early_labels: int,
                 on_label_dropped: Callable[[int], None] | None = None) -> None:
        if window_samples < 1 or window_s <= 0 or early_labels < 0:
            raise ValueError(f"labels window_samples={window_samples} (>= 1), window_s={window_s} (> 0) and "
                             f"early_labels={early_labels} (>= 0) are out of range")
        self.window_samples = window_samples
        self.window_s = window_s
        self.max_early = early_labels
        self._pending: OrderedDict[str, Pending] = OrderedDict()
        self._early: OrderedDict[str, int] = OrderedDict()
        self._on_label_dropped = on_label_dropped or (lambda n: None)

    def __len__(self) -> int:
        return len(self._pending)

    def add_sample(self, p: Pending) -> tuple[int | None, list[Pending]]:
        """Register an unlabeled sample; returns (its label if it already arrived, samples evicted for room)."""
        y = self._early.pop(p.id, None)
        if y is not None:
            return y, []
        self._pending[p.id] = p
        self._pending.move_to_end(p.id)
        evicted: list[Pending] = []
        while len(self._pending) > self.window_samples:
            evicted.append(self._pending.popitem(last=False)[1])
        return None, evicted

    def add_label(self, mid: str, y: int) -> Pending | None:
        """Join a label: the waiting sample it completes, or None (then the label is kept for a later sample, the
        oldest kept one dropped past ``early_labels``)."""
        p = self._pending.pop(mid, None)
        if p is None:
            self._early[mid] = y
            self._trim_early()
        return p

    def _trim_early(self) -> None:
        dropped = 0
        while len(self._early) > self.max_early:
            self._early.popitem(last=False)
            dropped += 1
        if dropped:
            self._on_label_dropped(dropped)

    def expire(self, now: float) -> list[Pending]:
        """Remove and return samples that waited longer than the window."""
        out: list[Pending] = []
        while self._pending:
            first = next(iter(self._pending.values()))
            if now - first.arrived <= self.window_s:
                break
            out.append(self._pending.popitem(last=False)[1])
        return out

    def pending_seqs(self) -> list[int]:
        """Spool positions of the waiting samples (saved in checkpoints to rebuild the window)."""
        return [p.seq for p in self._pending.values()]

    def early_count(self) -> int:
        """How many labels wait for their sample (safe to read from another thread, unlike a copy of them)."""
        return len(self._early)

    def early_labels(self) -> dict[str, int]:
        """Labels that arrived before their sample (saved in checkpoints)."""
        return dict(self._early)

    def restore_early(self, labels: dict[str, int]) -> None:
        """Reload early labels from a checkpoint."""
        for k, v in labels.items():
            self._early[str(k)] = int(v)
        self._trim_early()  # labels.early_labels may have been lowered since
