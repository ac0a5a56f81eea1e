"""Messages held in memory while the spool refuses writes: not acknowledged, predicted once, written and
acknowledged in order once the disk takes writes again (a read-only spool, by fault injection)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_cl.config import parse_config
from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.held import Arrived, HeldMessages, PredictedEarly
from edge_cl.daemon.metrics import Metrics
from edge_cl.daemon.mqtt_source import MqttLink, Outbox
from edge_cl.daemon.retry import WriteRetry
from edge_cl.daemon.spool import LABEL, SAMPLE, Incoming, Spool
from tests.daemon.faults import DiskFullConnection

DIM, CLASSES = 4, 3


class FakeClient:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def sample(i: int) -> Incoming:
    return Incoming(SAMPLE, f"s{i}", False, encode_json(f"s{i}", np.zeros(DIM), None))


def make_link(tmp_path: Path, clock: Clock, hold_limit: int = 100) -> tuple[MqttLink, Spool, FakeClient]:
    cfg = parse_config({"input": {"dim": DIM, "num_classes": CLASSES},
                        "model": {"type": "mlp", "input_dim": DIM, "hidden": [4], "num_classes": CLASSES},
                        "spool": {"path": str(tmp_path / "spool.db")}})
    metrics = Metrics()
    from edge_cl.daemon.codec import MessageCodec

    codec = MessageCodec("json", DIM, CLASSES, 4096)
    link = MqttLink(cfg.broker, cfg.topics, codec, lambda: Spool(cfg.spool.path), metrics, Outbox(10, metrics),
                    lambda: 0, hold_limit=hold_limit,
                    spool_retry=WriteRetry("spool", min_s=1.0, max_s=4.0, clock=clock))
    client = FakeClient()
    link._client = client
    return link, Spool(cfg.spool.path), client


def arrive(link: MqttLink, start: int, n: int, qos: int = 1) -> None:
    link._arrived += [Arrived(sample(i), mid=i, qos=qos) for i in range(start, start + n)]


def test_a_read_only_spool_holds_unacknowledged_then_writes_and_acks_in_order(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    link, spool, client = make_link(tmp_path, clock)
    arrive(link, 0, 3)
    link._flush(spool)
    assert client.acked == [0, 1, 2] and spool.last_seq() == 3
    spool._db = fault = DiskFullConnection(spool._db, "attempt to write a readonly database")  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="edge_cl.daemon"):
        arrive(link, 3, 4)
        link._flush(spool)
        arrive(link, 7, 2)
        link._flush(spool)  # not due yet: held without trying the disk
        clock.t = 1.5
        link._flush(spool)  # due: tried, refused again
        assert client.acked == [0, 1, 2], "nothing the spool refused may be acknowledged"
        assert len(link.held) == 6 and link.metrics.value("edge_cl_messages_held") == 6
        assert link.metrics.value("edge_cl_spool_write_failures_total") == 2
        offered = [it.msg_id for it, _ in link.held.take_for_prediction()]
        assert offered == [f"s{i}" for i in range(3, 9)] and not link.held.take_for_prediction()  # offered once
        fault.failing = False  # the operator remounts the disk read-write
        clock.t = 2.0
        link._flush(spool)
        assert len(link.held) == 6, "the backoff doubled: not tried before t=3.5"
        clock.t = 3.6
        link._flush(spool)
    assert client.acked == list(range(9)) and len(link.held) == 0 and spool.last_seq() == 9
    assert [r.msg_id for r in spool.read_after(0, 100)] == [f"s{i}" for i in range(9)]
    assert link.metrics.value("edge_cl_messages_held") == 0 and not link.spool_retry.failing
    causes = [r for r in caplog.records if "readonly" in r.getMessage()]
    assert len(causes) == 1 and causes[0].levelno == logging.ERROR, [r.getMessage() for r in caplog.records]
    assert str(tmp_path / "spool.db") in causes[0].getMessage() and not causes[0].exc_info
    assert any("written again" in r.getMessage() for r in caplog.records)


def test_over_the_limit_qos1_waits_at_the_broker_qos0_is_counted_lost(tmp_path: Path) -> None:
    clock = Clock()
    link, spool, client = make_link(tmp_path, clock, hold_limit=3)
    spool._db = fault = DiskFullConnection(spool._db)  # type: ignore[assignment]
    arrive(link, 0, 2)
    link._flush(spool)
    arrive(link, 2, 2)          # one held, one left with the broker
    arrive(link, 4, 2, qos=0)   # no room: lost, counted
    link._flush(spool)
    assert len(link.held) == 3 and link.held.refused_acked == 1
    assert link.metrics.value("edge_cl_spool_dropped_total") == 2  # counted as they are refused
    clock.t = 1.5
    link._flush(spool)
    fault.failing = False
    clock.t = 10.0
    link._flush(spool)
    assert client.acked == [0, 1, 2] and link._redeliver, "reconnect so that the broker resends mid 3"


def test_connection_loss_forgets_packet_ids_keeps_qos0() -> None:
    held = HeldMessages(10)
    held.hold([Arrived(sample(0), 1, 1), Arrived(sample(1), 2, 0), Arrived(Incoming(LABEL, "s0", True, b""), 3, 1)])
    assert [it.msg_id for it, _ in held.take_for_prediction()] == ["s0", "s1"]  # samples only
    held.connection_lost()
    assert [a.mid for a in held.release()] == [2]


def test_predicted_early_is_bounded_and_consumed_once() -> None:
    p = PredictedEarly(limit=2)
    assert p.add("a") and not p.add("a") and p.add("b") and p.add("c")
    assert not p.consume("a")  # forgotten past the limit
    assert p.consume("b") and not p.consume("b") and len(p) == 1


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit=0"):
        HeldMessages(0)
