"""The bounded queue of outbound messages from the learning loop to the network thread.

Messages are handed over in lists: one lock round per chunk of predictions and one per network-loop turn, not
one per message. With both threads busy, a contended lock can cost the learning loop a wait for the GIL (up to
the interpreter's switch interval); profiled in a burst, its per-message queue puts took longer than its learn
steps (issue #27).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_cl.daemon.metrics import Metrics


@dataclass(frozen=True)
class Outgoing:
    """A message for the network thread to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class Outbox:
    """Bounded FIFO from the learner to the network thread; counts what it has to drop."""

    def __init__(self, maxsize: int, metrics: Metrics) -> None:
        if maxsize < 1:
            raise ValueError(f"outbox size {maxsize} must be at least 1")
        self.maxsize = maxsize
        self._items: deque[Outgoing] = deque()
        self._room = threading.Condition()
        self._metrics = metrics
        self._on_put: Callable[[], None] | None = None

    def on_put(self, wake: Callable[[], None] | None) -> None:
        """Call ``wake`` after each hand-over that queued something (the network thread's wake-up)."""
        self._on_put = wake

    def put(self, msg: Outgoing, timeout: float = 1.0, count_drop: bool = True) -> bool:
        """Queue one message, waiting up to ``timeout`` for room; False (and counted, unless ``count_drop`` is
        False: the caller tries again) when it was dropped."""
        return self.put_many([msg], timeout, count_drop) == 1

    def put_many(self, msgs: Sequence[Outgoing], timeout: float = 1.0, count_drop: bool = True,
                 wake: bool = True) -> int:
        """Queue ``msgs`` in order, waiting up to ``timeout`` in all for room; how many were queued (a prefix of
        ``msgs``). The rest are counted as dropped unless ``count_drop`` is False (the caller tries again).
        ``wake=False``: no wake-up call (the caller knows the network thread turns soon anyway)."""
        done = 0
        deadline: float | None = None
        with self._room:
            while done < len(msgs):
                room = self.maxsize - len(self._items)
                if room > 0:
                    part = msgs[done:done + room]
                    self._items.extend(part)
                    done += len(part)
                    continue
                if timeout <= 0:
                    break
                if deadline is None:
                    deadline = time.monotonic() + timeout
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._room.wait(left)
        if done and wake and self._on_put is not None:
            self._on_put()
        if count_drop and done < len(msgs):
            self.dropped(len(msgs) - done)
        return done

    def dropped(self, n: int = 1) -> None:
        """Count ``n`` messages given up after :meth:`put_many` with ``count_drop=False`` left them out."""
        self._metrics.outbound_dropped.inc(n)

    def take(self, limit: int) -> list[Outgoing]:
        """Up to ``limit`` messages, oldest first (the network thread, once per loop turn)."""
        with self._room:
            n = min(limit, len(self._items))
            if not n:
                return []
            pop = self._items.popleft
            out = [pop() for _ in range(n)]
            self._room.notify_all()
        return out

    def get_nowait(self) -> Outgoing | None:
        """The next message, or None."""
        got = self.take(1)
        return got[0] if got else None

    def __len__(self) -> int:
        return len(self._items)
