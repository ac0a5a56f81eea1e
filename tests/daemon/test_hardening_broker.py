"""Issue #12 against a real Mosquitto: no message stops the daemon, binary zero-length ids are dead-lettered,
what was queued while the daemon was down survives a broker restart (MQTT 5 and 3.1.1), a lost session is
reported, and a few hundred fuzzed payloads through the broker are all accounted for."""

from __future__ import annotations

import json
import logging
import signal
import struct
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_cl.daemon.codec import MessageCodec, encode_binary, encode_json
from tests.broker import Collector, Mosquitto, daemon_toml, publish_all
from tests.daemon.fuzz_payloads import LABEL as LABEL_TOPIC
from tests.daemon.fuzz_payloads import kinds
from tests.daemon.test_service_broker import CLASSES, DIM, digest, final_extra, running, samples, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def test_poison_messages_do_not_stop_the_daemon(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port)
    col = Collector(broker.port, ["t/dead", "t/predictions"])
    deep = b"[" * 1500 + b"]" * 1500  # under max_payload_bytes: parsed, and once a RecursionError
    deep_sample = b'{"id": "deep", "x": ' + deep + b"}"
    surrogate_sample = b'{"id": "bad-\\ud800", "x": [0, 0, 0, 0, 0, 0, 0, 0], "y": 1}'
    labels = [b'{"id": "bad-\\ud800", "y": 1}', b'{"id": "bad-\xed\xa0\x80", "y": 1}', deep]
    good = samples(20, "g")
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", [deep, deep_sample, surrogate_sample])
        publish_all(broker.port, "t/labels", labels)
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in good])
        assert col.wait_for("t/dead", 6, 20), col.count("t/dead")
        assert wait_until(lambda: d.progress.learned == len(good), 20), d.progress.learned
        assert d.metrics.value("edge_cl_bad_inputs_total", reason="malformed") == 6
        assert d._link is not None and d._link.fatal is None
    assert {m["reason"] for m in col.json("t/dead")} == {"malformed"}
    assert col.wait_for("t/predictions", len(good), 5)
    col.close()


def test_binary_zero_length_ids_are_dead_lettered_not_merged(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port, fmt="binary")
    col = Collector(broker.port, ["t/dead", "t/predictions"])
    zero = b"EC\x01\x01\x00\x00" + struct.pack("<i", 1) + struct.pack(f"<{DIM}f", *[0.5] * DIM)
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", [zero, zero, encode_binary("ok", np.zeros(DIM), 1)])
        assert col.wait_for("t/dead", 2, 15) and col.wait_for("t/predictions", 1, 15)
        assert d.metrics.value("edge_cl_duplicates_total") == 0
        assert d.metrics.value("edge_cl_bad_inputs_total", reason="malformed") == 2
    col.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_queued_while_stopped_survives_a_broker_restart(broker: Mosquitto, tmp_path: Path, protocol: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port, broker_extra=f'protocol = "{protocol}"')
    with running(cfg):  # the daemon's first session: subscribes, then stops cleanly
        pass
    data = samples(300, "q")
    publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in data])
    broker.stop(signal.SIGTERM)  # Mosquitto saves sessions and queues on a clean stop
    broker.start()
    with caplog.at_level(logging.INFO, logger="edge_cl.daemon.mqtt"), running(cfg) as d:
        assert wait_until(lambda: d.progress.learned >= len(data), 30), d.progress.learned
        assert d.metrics.value("edge_cl_broker_sessions_lost_total") == 0
    assert "session resumed" in caplog.text
    extra = final_extra(tmp_path / "d")
    assert extra["learned"] == len(data) and extra["learned_digest"] == digest([i for i, _, _ in data])


def test_a_session_the_broker_lost_is_reported(broker: Mosquitto, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port)
    with running(cfg):
        pass
    broker.stop(signal.SIGTERM)
    for f in (broker.workdir / "data").iterdir():  # the broker forgets everything
        f.unlink()
    broker.start()
    with caplog.at_level(logging.INFO, logger="edge_cl.daemon.mqtt"), running(cfg) as d:
        # both sessions: the samples' (client_id) and the labels' own (client_id-labels)
        assert wait_until(lambda: d.metrics.value("edge_cl_broker_sessions_lost_total") == 2, 10)
    lost = [r.getMessage() for r in caplog.records if "no longer holds our session" in r.getMessage()]
    assert len(lost) == 2 and any("'edge-cl-test-labels'" in m for m in lost), lost


def publish_in_order(port: int, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1 from one client, one at a time in flight: the daemon receives them in this order (dedupe agrees)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzz-publisher", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()


def test_fuzz_through_the_broker_accounts_for_every_message(broker: Mosquitto, tmp_path: Path) -> None:
    from edge_cl.daemon.intake import Intake
    from edge_cl.daemon.spool import BAD, SAMPLE, Spool

    cfg = daemon_toml(tmp_path / "d", broker.port)
    col = Collector(broker.port, ["t/dead", "t/predictions"])
    # The same intake and spool, in the test, say what the daemon must do with each message.
    mirror, mirror_spool = Intake(MessageCodec("json", DIM, CLASSES, 4096)), Spool(tmp_path / "mirror.db")
    expected: Counter[str] = Counter()
    probes = iter(range(10**6))
    with running(cfg) as d:

        @settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(kinds(DIM, CLASSES, 4096), min_size=100, max_size=100))
        def one_batch(batch: list[tuple[str, str, bytes]]) -> None:
            publish_in_order(broker.port, [("t/labels" if topic == LABEL_TOPIC else "t/samples", p)
                                           for _, topic, p in batch])
            items = [mirror.admit(p, topic == LABEL_TOPIC) for _, topic, p in batch]
            for it, seq in zip(items, mirror_spool.put_many(items)):
                expected["duplicate" if seq is None else "predicted" if it.kind == SAMPLE else
                         f"dead:{json.loads(it.payload)['reason']}" if it.kind == BAD else "label"] += 1
            probe = f"probe-{next(probes)}"
            publish_all(broker.port, "t/samples", [encode_json(probe, np.zeros(DIM), 1)])
            expected["predicted"] += 1
            assert wait_until(lambda: probe in {m["id"] for m in col.json("t/predictions")}, 20)

        one_batch()
        assert wait_until(lambda: col.count("t/predictions") >= expected["predicted"], 10)
        dead = Counter(f"dead:{m['reason']}" for m in col.json("t/dead"))
        assert col.count("t/predictions") == expected["predicted"]
        assert dead == Counter({k: v for k, v in expected.items() if k.startswith("dead:")})
        assert d.metrics.value("edge_cl_duplicates_total") == expected["duplicate"]
        assert d._link is not None and d._link.fatal is None
    print("fuzz through the broker:", dict(expected))
    col.close()


def test_a_storm_of_labels_for_unknown_ids_leaves_every_valid_sample_predicted(broker: Mosquitto,
                                                                              tmp_path: Path) -> None:
    """10,000 labels for ids that never come, while valid samples flow: each sample is predicted once, every
    labelled one learned (the storm is no lag to catch up on), nothing is dropped unseen: each eviction is counted."""
    storm, early, window = 10_000, 1_000, 50
    cfg = daemon_toml(tmp_path / "d", broker.port, extra=f"""
[labels]
window_samples = {window}
window_s = 3.0
early_labels = {early}
""")
    cfg.write_text(cfg.read_text().replace('path = "spool.sqlite"', 'path = "spool.sqlite"\nlag_high_water = 500'))
    labelled, unlabelled = samples(100, "l", seed=1), samples(100, "u", seed=2)
    valid = [encode_json(i, x, y) for i, x, y in labelled] + [encode_json(i, x, None) for i, x, _ in unlabelled]
    col = Collector(broker.port, ["t/predictions"])
    with running(cfg) as d:
        flood = threading.Thread(target=publish_all, args=(broker.port, "t/labels", [
            json.dumps({"id": f"unknown-{k}", "y": k % CLASSES}).encode() for k in range(storm)]),
            kwargs={"client_id": "storm"})
        flood.start()
        publish_all(broker.port, "t/samples", valid, rate=200.0)
        flood.join(60)
        assert col.wait_for("t/predictions", len(valid), 60), col.count("t/predictions")
        assert wait_until(lambda: d.progress.learned == len(labelled), 30), d.progress.learned

        def evicted(reason: str) -> float:
            return d.metrics.value("edge_cl_label_join_evicted_total", reason=reason)

        assert wait_until(lambda: evicted("early_labels") == storm - early, 30), evicted("early_labels")
        # the 100 unlabelled samples: pushed out of the 50-sample window, the rest after 3 s
        assert wait_until(lambda: evicted("window_samples") + evicted("window_s") == len(unlabelled), 30)
        assert evicted("window_s") >= 1
        assert d.metrics.value("edge_cl_samples_not_learned_total", reason="catch_up") == 0
        assert d.metrics.value("edge_cl_outbound_dropped_total") == 0
    ids = Counter(m["id"] for m in col.json("t/predictions"))
    col.close()
    assert set(ids) == {i for i, _, _ in labelled + unlabelled} and set(ids.values()) == {1}
