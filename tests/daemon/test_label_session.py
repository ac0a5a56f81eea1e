"""Labels come in an MQTT session of their own (issue #26): a storm of labels never queues ahead of samples at the
broker, and label rows do not use up the learning loop's batch. Behaviour, not timing: samples published after a
storm of labels are all predicted while none of those labels has even been taken from the broker."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.service import LABEL_ROWS_PER_CHUNK, chunk_of, read_chunk
from edge_cl.daemon.spool import LABEL, SAMPLE, Incoming, Row, Spool
from tests.broker import Collector, Mosquitto, daemon_toml, publish_all
from tests.daemon.test_service_broker import CLASSES, running, samples, wait_until


def _rows(kinds: str) -> list[Row]:
    return [Row(i + 1, LABEL if k == "L" else SAMPLE, f"m{i}", b"", 0.0) for i, k in enumerate(kinds)]


def test_a_chunk_counts_samples_not_labels() -> None:
    rows, weight = chunk_of(_rows("LLSLSSL"), 2)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5] and weight == 2
    rows, weight = chunk_of(_rows("LLLL"), 2)  # labels only: all of them, a chunk of no weight
    assert len(rows) == 4 and weight == 0
    assert LABEL_ROWS_PER_CHUNK >= 64


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from("SL"), max_size=700).map("".join), limit=st.integers(1, 70),
       start=st.integers(0, 30), gone=st.sets(st.integers(1, 700), max_size=40))
def test_a_chunk_read_piecewise_is_the_chunk_of_the_long_read(tmp_path: Path, kinds: str, limit: int, start: int,
                                                              gone: set[int]) -> None:
    """read_chunk reads no row past the chunk, yet returns exactly what chunk_of made of the long read, label storms
    and rows dropped by overflow (no payload) included."""
    sp = Spool(tmp_path / f"s{abs(hash((kinds, limit, start)))}.db")
    try:
        sp.put_many([Incoming(LABEL if k == "L" else SAMPLE, None, False, b"p") for k in kinds])
        if gone:
            sp._db.execute(f"UPDATE spool SET payload = NULL WHERE seq IN ({','.join(map(str, gone))})")
        rows, weight = read_chunk(sp, start, limit)
        want_rows, want_weight = chunk_of(sp.read_after(start, limit + LABEL_ROWS_PER_CHUNK), limit)
        assert [r.seq for r in rows] == [r.seq for r in want_rows] and weight == want_weight
    finally:
        sp.close()


@pytest.mark.integration
@pytest.mark.broker
def test_samples_are_predicted_while_a_label_storm_waits(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port)
    valid = samples(20, "v")
    col = Collector(broker.port, ["t/predictions"])
    with running(cfg) as d:
        labels = d._labels_link
        assert labels is not None and labels.client_id == "edge-cl-test-labels"
        release = threading.Event()
        real_flush = labels._flush

        def held_flush(spool: Any, final: bool = False) -> None:  # the labels' network thread stops here
            release.wait(30)
            real_flush(spool, final)

        labels._flush = held_flush  # type: ignore[method-assign]
        storm = [json.dumps({"id": f"unknown-{k}", "y": k % CLASSES}).encode() for k in range(2000)]
        publish_all(broker.port, "t/labels", storm, client_id="storm")
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in valid])
        try:
            assert col.wait_for("t/predictions", len(valid), 30), col.count("t/predictions")
            assert wait_until(lambda: d.progress.learned == len(valid), 20), d.progress.learned
            # predicted and learned with not one label of the storm spooled: nothing queued them behind it
            assert d.metrics.value("edge_cl_label_join_evicted_total", reason="early_labels") == 0
            assert d.join.early_count() == 0
        finally:
            release.set()
        early = d.cfg.labels.early_labels
        assert wait_until(lambda: d.join.early_count() == min(early, len(storm)), 30)
        assert d.metrics.value("edge_cl_duplicates_total") == 0
    assert {m["id"] for m in col.json("t/predictions")} == {i for i, _, _ in valid}
    col.close()


@pytest.mark.integration
@pytest.mark.broker
def test_a_session_from_before_the_split_does_not_get_labels_twice(broker: Mosquitto, tmp_path: Path) -> None:
    """An older edge_cl left both subscriptions in its one persistent session: the samples session drops the labels
    one, so each label reaches the daemon once (through the labels session), and none is lost on the way."""
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-cl-test", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    subscribed = threading.Event()
    old.on_subscribe = lambda *a: subscribed.set()
    old.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    old.loop_start()
    old.subscribe([("t/samples", 1), ("t/labels", 1)])
    assert subscribed.wait(10)
    old.disconnect()
    old.loop_stop()
    cfg = daemon_toml(tmp_path / "d", broker.port)
    with running(cfg) as d:
        publish_all(broker.port, "t/labels", [json.dumps({"id": f"a{k}", "y": 0}).encode() for k in range(50)])
        assert wait_until(lambda: d.join.early_count() == 50, 20), d.join.early_count()
        assert wait_until(lambda: d.metrics.value("edge_cl_messages_received_total", kind="label") >= 50, 5)
        assert d.metrics.value("edge_cl_duplicates_total") == 0
        assert d.metrics.value("edge_cl_messages_received_total", kind="label") == 50


@pytest.mark.integration
@pytest.mark.broker
def test_the_labels_session_waits_while_predictions_queue(broker: Mosquitto, tmp_path: Path) -> None:
    """The labels session shares the outbox but never publishes: predictions waiting there must not turn its wait
    for the broker into a busy loop (it took a sixth of the daemon's GIL in a burst, issue #27)."""
    from edge_cl.daemon.outbox import Outgoing

    cfg = daemon_toml(tmp_path / "d", broker.port)
    with running(cfg) as d:
        labels, link = d._labels_link, d._link
        assert labels is not None and link is not None
        link._drain_outbox = lambda: None  # type: ignore[method-assign]  # the queue stays full for the test
        turns = [0]
        real_turn = labels._turn

        def counted(spool: Any) -> int:
            turns[0] += 1
            return real_turn(spool)

        labels._turn = counted  # type: ignore[method-assign]
        d.outbox.put_many([Outgoing("t/predictions", b"{}", 1) for _ in range(10)], timeout=1.0)
        assert len(d.outbox) == 10
        threading.Event().wait(0.5)
        # A turn waits 5 ms for the broker: at most ~100 in half a second; a busy loop makes thousands.
        assert turns[0] < 250, turns[0]
