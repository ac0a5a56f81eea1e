"""Repeated message ids: a rate-limited warning with an id and the count, and a dedupe window in time for
devices whose message counter restarts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_cl.config import parse_config
from edge_cl.daemon.codec import MessageCodec
from edge_cl.daemon.held import Arrived
from edge_cl.daemon.metrics import Metrics
from edge_cl.daemon.mqtt_source import MqttLink, Outbox
from edge_cl.daemon.service import open_spool
from edge_cl.daemon.spool import SAMPLE, Incoming, Spool


def _item(i: int) -> Incoming:
    return Incoming(SAMPLE, f"dev1-{i}", False, b'{"id": "dev1-%d", "x": [0.0]}' % i)


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class _AckingClient:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def test_restarted_counter_is_warned_with_an_id_and_the_count(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config({"input": {"dim": 1, "num_classes": 2},
                        "model": {"type": "mlp", "input_dim": 1, "hidden": [2], "num_classes": 2},
                        "spool": {"path": str(tmp_path / "spool.db")}})
    spool = open_spool(cfg)
    spool.put_many([_item(i) for i in range(1200)])  # before the device rebooted
    metrics = Metrics()
    link = MqttLink(cfg.broker, cfg.topics, MessageCodec("json", 1, 2, 1 << 20), lambda: spool, metrics,
                    Outbox(10, metrics), lambda: 0, warn_interval_s=3600.0)
    link._client = _AckingClient()
    with caplog.at_level(logging.WARNING, logger="edge_cl.daemon"):
        for start in range(0, 1200, 100):  # after the reboot: the same ids again
            link._arrived = [Arrived(_item(i), i + 1, 1) for i in range(start, start + 100)]
            link._flush(spool)
    warnings = [r.getMessage() for r in caplog.records if "already holds" in r.getMessage()]
    assert len(warnings) == 1, warnings  # rate-limited: one line, not 1,200
    assert "ignored 100 message(s)" in warnings[0] and "'dev1-99'" in warnings[0]
    assert "spool.dedupe_window_s" in warnings[0] and "boot id" in warnings[0]
    assert metrics.value("edge_cl_duplicates_total") == 1200
    assert len(link._client.acked) == 1200  # acknowledged all the same: the broker must not redeliver them


def test_the_next_warning_counts_every_duplicate_held_back(caplog: pytest.LogCaptureFixture) -> None:
    from edge_cl.daemon.duplicates import DuplicateWarning

    clock = _Clock(0.0)
    warn = DuplicateWarning(10.0, clock)
    with caplog.at_level(logging.WARNING, logger="edge_cl.daemon"):
        warn.ignored([("sample", "a")])
        for t in range(1, 10):
            clock.t = float(t)
            warn.ignored([("sample", f"b{t}"), ("label", f"c{t}")])
        clock.t = 10.0
        warn.ignored([("label", "z")])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "ignored 1 message(s)" in lines[0] and "sample id 'a'" in lines[0]
    assert "ignored 19 message(s)" in lines[1] and "label id 'z'" in lines[1]


def test_dedupe_window_in_time_accepts_an_old_id_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_cl.daemon.spool as spool_mod

    clock = _Clock(1000.0)
    monkeypatch.setattr(spool_mod.time, "time", clock)
    sp = Spool(tmp_path / "s.db", dedupe_window_s=60.0)
    (first,) = sp.put_many([_item(1)])
    clock.t = 1030.0
    assert sp.put_many([_item(1)]) == [None]  # a redelivery inside the window
    clock.t = 1061.0
    (again,) = sp.put_many([_item(1)])  # the counter restarted: a new message
    assert again is not None and again > first
    assert [r.seq for r in sp.read_after(0, 10)] == [first, again]  # the first one is still there to learn
    clock.t = 1062.0
    assert sp.put_many([_item(1)]) == [None]  # and the new one is de-duplicated in its turn
    plain = Spool(tmp_path / "p.db")
    plain.put_many([_item(1)])
    clock.t = 10_000_000.0
    assert plain.put_many([_item(1)]) == [None]  # without a window ids are remembered as before


def test_dedupe_window_s_reaches_the_spool(tmp_path: Path) -> None:
    cfg = parse_config({"input": {"dim": 1, "num_classes": 2},
                        "model": {"type": "mlp", "input_dim": 1, "hidden": [2], "num_classes": 2},
                        "spool": {"path": str(tmp_path / "s.db"), "dedupe_window_s": 3600}})
    assert open_spool(cfg).dedupe_window_s == 3600.0
    with pytest.raises(Exception, match="dedupe_window_s"):
        parse_config({"input": {"dim": 1, "num_classes": 2}, "model": {"type": "mlp", "input_dim": 1,
                      "num_classes": 2}, "spool": {"dedupe_window_s": 0}})


