"""Tests of edge_cl.daemon.outbox: order, the bound, what is dropped and counted, lists handed over."""

from __future__ import annotations

import threading
import time

from edge_cl.daemon.metrics import Metrics
from edge_cl.daemon.outbox import Outbox, Outgoing


def msgs(n: int, start: int = 0) -> list[Outgoing]:
    return [Outgoing("t", f"{i}".encode()) for i in range(start, start + n)]


def test_order_and_take_limit() -> None:
    box = Outbox(100, Metrics())
    assert box.put_many(msgs(5)) == 5 and box.put(Outgoing("t", b"5"))
    assert [m.payload for m in box.take(4)] == [b"0", b"1", b"2", b"3"]
    assert [m.payload for m in box.take(10)] == [b"4", b"5"] and box.take(10) == []
    assert box.get_nowait() is None


def test_full_queue_keeps_a_prefix_and_counts_the_rest() -> None:
    m = Metrics()
    box = Outbox(3, m)
    assert box.put_many(msgs(5), timeout=0.0) == 3
    assert m.value("edge_cl_outbound_dropped_total") == 2
    assert box.put_many(msgs(2), timeout=0.0, count_drop=False) == 0
    assert m.value("edge_cl_outbound_dropped_total") == 2  # the caller retries: not counted
    assert [x.payload for x in box.take(10)] == [b"0", b"1", b"2"]


def test_a_waiting_put_continues_as_the_network_thread_takes() -> None:
    box = Outbox(2, Metrics())
    took: list[bytes] = []

    def network() -> None:
        while len(took) < 6:
            took.extend(x.payload for x in box.take(1))
            time.sleep(0.005)

    t = threading.Thread(target=network)
    t.start()
    assert box.put_many(msgs(6), timeout=5.0) == 6
    t.join(5)
    assert took == [f"{i}".encode() for i in range(6)]


def test_each_hand_over_that_queues_wakes_the_network_thread_once() -> None:
    box = Outbox(3, Metrics())
    woken: list[int] = []
    box.on_put(lambda: woken.append(len(box)))
    box.put_many(msgs(2))
    box.put(Outgoing("t", b"x"))
    box.put_many(msgs(2), timeout=0.0)  # full: nothing queued, nobody woken
    assert woken == [2, 3]
    box.on_put(None)
    box.take(3)
    box.put_many(msgs(1))
    assert woken == [2, 3]


def test_a_hand_over_that_says_so_wakes_nobody() -> None:
    box = Outbox(10, Metrics())
    woken: list[int] = []
    box.on_put(lambda: woken.append(len(box)))
    box.put_many(msgs(2), wake=False)  # a full chunk of a backlog: the network thread turns soon anyway
    assert len(box) == 2 and woken == []
    box.put_many(msgs(1))
    assert woken == [3]
