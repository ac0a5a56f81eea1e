"""Messages the spool refused (its disk full or read-only), held in memory unacknowledged until a write works.

Acknowledging a message the spool does not hold would lose it in a crash, so the daemon keeps the few the broker
has in flight and the broker keeps the rest: it sends no more unacknowledged messages than its window (MQTT 5
Receive Maximum, 1000 here; Mosquitto's ``max_inflight_messages`` for 3.1.1). Each held sample is predicted once
from the model in memory, and not a second time when the same message later comes back out of the spool.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from edge_cl.daemon.spool import SAMPLE, Incoming


@dataclass(frozen=True)
class Arrived:
    """A message read from the broker and not yet acknowledged: the spool row, its MQTT packet id and QoS."""

    item: Incoming
    mid: int
    qos: int


class HeldMessages:
    """What the network thread holds while the spool refuses writes (bounded), and the samples it offers the
    learner thread for prediction (``take_for_prediction``, safe to call from that thread)."""

    def __init__(self, limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError(f"held message limit={limit} must be at least 1")
        self.limit = limit
        self._held: list[Arrived] = []
        self._to_predict: deque[tuple[Incoming, float]] = deque()  # appended/popped whole: thread-safe
        self.refused_acked = 0     # QoS 1/2 messages over the limit, left unacknowledged: the broker resends them
        self.refused_lost = 0      # QoS 0 messages over the limit: the broker keeps no copy, they are lost

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, batch: list[Arrived]) -> None:
        """Hold ``batch`` (network thread); what exceeds the limit is not held and is counted."""
        now = time.time()
        for a in batch:
            if len(self._held) >= self.limit:
                if a.qos > 0:
                    self.refused_acked += 1
                else:
                    self.refused_lost += 1
                continue
            self._held.append(a)
            if a.item.kind == SAMPLE:
                self._to_predict.append((a.item, now))

    def release(self) -> list[Arrived]:
        """Everything held, to be written to the spool now; held is empty after (network thread)."""
        out, self._held = self._held, []
        return out

    def restore(self, batch: list[Arrived]) -> None:
        """Put back a batch whose spool write failed again (without offering its samples a second time)."""
        self._held = batch + self._held

    def connection_lost(self) -> None:
        """The broker resends unacknowledged QoS 1/2 messages on the next connect (their packet ids die with this
        connection); QoS 0 ones it never resends, so those stay held."""
        self._held = [a for a in self._held if a.qos == 0]

    def take_for_prediction(self) -> list[tuple[Incoming, float]]:
        """Held samples not yet offered, with the time they arrived (learner thread)."""
        out = []
        while self._to_predict:
            out.append(self._to_predict.popleft())
        return out


class PredictedEarly:
    """Ids of samples predicted from memory before the spool took them (learner thread), so that the spool's copy
    is learned but not predicted again. Bounded: past ``limit`` the oldest ids are forgotten."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, sample_id: str) -> bool:
        """Remember ``sample_id``; False when it is already remembered (the same message held twice)."""
        if sample_id in self._ids:
            return False
        self._ids[sample_id] = None
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True

    def consume(self, sample_id: str) -> bool:
        """True (and forgotten) when ``sample_id`` was predicted from memory."""
        if sample_id not in self._ids:
            return False
        del self._ids[sample_id]
        return True

    def __len__(self) -> int:
        return len(self._ids)
