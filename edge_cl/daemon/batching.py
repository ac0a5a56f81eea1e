"""Adaptive micro-batches: how many spooled messages the learning loop reads next (a chunk), and learns per step.

While the daemon keeps up, a chunk holds what arrived (at most ``max_batch``). Under a backlog each chunk
that comes back full doubles the next one, up to the larger of ``backlog_max_chunk`` and ``backlog_max_batch``,
as long as twice the chunk's measured time stays under the latency target; a chunk over the target halves the
next; a chunk that finds the spool drained (fewer rows than asked for) sets it back to ``max_batch``. A chunk is
learned in steps of at most ``backlog_max_batch`` (``max_batch`` when unset): larger chunks share the work
around the steps (spool read, predictions, publishing) without changing what is learned, while larger steps
learn many more samples a second (one step's fixed cost is shared by more rows) but less from each sample. The
target bounds how long a message that arrives as the backlog drains waits behind the chunk in progress. Replay
grows in proportion to the step, so a step's mix of new and replayed rows stays what ``replay_batch`` /
``max_batch`` sets.
"""

from __future__ import annotations

REPLAY_LIMIT = 65536  # LearnerConfig.replay_batch's own bound


class BatchSizer:
    """The next chunk's size from the last chunk's size and time (one per learning loop, not thread-safe)."""

    def __init__(self, base: int, bound: int, target_s: float) -> None:
        if not 1 <= base <= bound:
            raise ValueError(f"batch sizes must satisfy 1 <= max_batch ({base}) <= backlog_max_batch ({bound})")
        if not target_s > 0:
            raise ValueError(f"the latency target must be positive, got {target_s} s")
        self.base = base
        self.bound = bound
        self.target_s = target_s
        self.limit = base

    def done(self, rows: int, seconds: float) -> None:
        """Account a chunk of ``rows`` messages read with the current limit that took ``seconds`` end to end."""
        if seconds > self.target_s:
            self.limit = max(self.base, self.limit // 2)
        elif rows < self.limit:
            self.limit = self.base  # the spool is drained: back to the steady size
        elif 2.0 * seconds <= self.target_s:
            self.limit = min(self.bound, 2 * self.limit)


def scaled_replay(replay_batch: int, max_batch: int, rows: int) -> int | None:
    """Rows per replay draw for a step of ``rows`` new rows: ``replay_batch`` scaled by ``rows / max_batch`` when
    the step is larger than ``max_batch``; None (the configured draw) otherwise."""
    if rows <= max_batch or replay_batch == 0:
        return None
    return min(REPLAY_LIMIT, round(replay_batch * rows / max_batch))
