"""The benchmark's raw-socket MQTT clients (tests/mqtt_wire.py) against a real Mosquitto: every QoS 1 publish is
acknowledged, and a subscriber receives each payload once, in order, whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.broker import Mosquitto, find_mosquitto
from tests.mqtt_wire import Publisher, Subscriber, publish_packets, split_packets, varint

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def test_split_packets_keeps_an_incomplete_tail() -> None:
    body = b"x" * 200  # a two-byte remaining length
    stream = bytearray(b"\x30" + varint(200) + body + b"\x40\x02\x00\x01" + b"\x30\x05ab")
    got, used = split_packets(stream)
    assert got == [(0x30, body), (0x40, b"\x00\x01")] and used == len(stream) - 4


def test_publish_and_receive_through_mosquitto(tmp_path: Path) -> None:
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(binary, tmp_path).start()
    try:
        sub = Subscriber(broker.port, ["w/t"])
        pub = Publisher(broker.port)
        payloads = [bytes([i % 256]) * (i % 3000 + 1) for i in range(3000)]
        pub.send(publish_packets("w/t", payloads[:2000]))
        pub.send_paced(publish_packets("w/t", payloads[2000:2010]), rate=1000.0)
        pub.send(publish_packets("w/t", payloads[2010:]), block=7)
        assert pub.wait_acked(3000, 30) and pub.acked == 3000
        assert sub.wait_for("w/t", 3000, 30)
        assert sub.messages["w/t"] == payloads
        assert sub.stamps["w/t"] == sorted(sub.stamps["w/t"])
        pub.close()
        sub.close()
    finally:
        broker.stop()
