"""edge_cl.daemon.paho_lean against paho's own client: the same packet stream, whole or in fragments, gives the same
messages to on_message, the same acknowledgements on the wire and the same publishes completed."""

from __future__ import annotations

import socket
import struct
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import _ConnectionState

from edge_cl.daemon.paho_lean import LeanClient
from edge_cl.daemon.socket_batch import BatchedSocket
from tests.mqtt_wire import varint


def _publish(topic: bytes, payload: bytes, qos: int, mid: int, v5: bool, props: bytes = b"", flags: int = 0) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    if v5:
        body += varint(len(props)) + props
    body += payload
    return bytes([0x30 | (qos << 1) | flags]) + varint(len(body)) + body


def _stream(v5: bool) -> bytes:
    out = []
    for i in range(60):
        qos = (0, 1, 1, 1, 2)[i % 5]
        props = b"\x01\x01" if v5 and i % 7 == 0 else b""  # payload format indicator: paho's path
        out.append(_publish(b"t/samples" if i % 3 else b"t/labels", bytes([i]) * (i * 37 % 700), qos, i + 1, v5,
                            props, flags=0x08 if i % 11 == 0 else 0))
    return b"".join(out)


def _client(cls: type, v5: bool, chunks: list[bytes]) -> tuple[Any, list[tuple[Any, ...]], socket.socket]:
    a, b = socket.socketpair()
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id="x", protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                 manual_ack=True)
    client.max_inflight_messages_set(0)
    client._sock = BatchedSocket(a)
    a.setblocking(False)
    client._state = _ConnectionState.MQTT_CS_CONNECTED
    got: list[tuple[Any, ...]] = []

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        got.append((msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.dup), bool(msg.retain)))
        if msg.qos:
            c.ack(msg.mid, msg.qos)

    client.on_message = on_message
    for chunk in chunks:
        b.sendall(chunk)
        for _ in range(2):
            client.loop_read()
    for _ in range(200):  # loop_read() reads one packet a call when nothing is in flight
        client.loop_read()
    return client, got, b


def _written(b: socket.socket) -> bytes:
    b.setblocking(False)
    out = b""
    try:
        while chunk := b.recv(1 << 20):
            out += chunk
    except BlockingIOError:
        pass
    return out


@pytest.mark.parametrize("v5", [True, False])
@pytest.mark.parametrize("piece", [0, 3, 1000])
def test_received_publishes_are_delivered_and_acknowledged_as_paho_does(v5: bool, piece: int) -> None:
    data = _stream(v5)
    chunks = [data] if not piece else [data[i:i + piece] for i in range(0, len(data), piece)]
    ref, ref_got, ref_b = _client(mqtt.Client, v5, chunks)
    lean, lean_got, lean_b = _client(LeanClient, v5, chunks)
    assert len(ref_got) == 48 and lean_got == ref_got  # QoS 2 waits for its PUBREL in both
    assert _written(lean_b) == _written(ref_b)  # the PUBACKs and PUBRECs, in the same order
    assert set(lean._in_messages) == set(ref._in_messages)


@pytest.mark.parametrize("v5", [True, False])
def test_pubacks_complete_the_publishes_as_paho_does(v5: bool) -> None:
    clients = []
    for cls in (mqtt.Client, LeanClient):
        client, _, b = _client(cls, v5, [])
        infos = [client.publish("t/predictions", b"p%d" % i, qos=1) for i in range(6)]
        _written(b)
        acks = [b"\x40\x02" + struct.pack("!H", infos[0].mid)]
        if v5:
            acks += [b"\x40\x03" + struct.pack("!H", infos[1].mid) + b"\x10",  # no matching subscribers
                     b"\x40\x04" + struct.pack("!H", infos[2].mid) + b"\x00\x00"]  # with an empty property list
        acks += [b"\x40\x02" + struct.pack("!H", 999)]  # unknown mid: ignored
        b.sendall(b"".join(acks))
        for _ in range(10):
            client.loop_read()
        clients.append(([i.is_published() for i in infos], sorted(client._out_messages), client._inflight_messages))
    assert clients[0] == clients[1]
    assert clients[1][0][:3 if v5 else 1] == [True] * (3 if v5 else 1)


def test_per_topic_callbacks_are_refused() -> None:
    with pytest.raises(NotImplementedError):
        LeanClient(mqtt.CallbackAPIVersion.VERSION2, client_id="x").message_callback_add("t/#", lambda *a: None)


def test_an_untested_paho_gets_pahos_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean paths override paho's private packet handlers: on a paho they were not tested with, the daemon
    uses paho's own client instead (slower, never wrong)."""
    import paho.mqtt

    from edge_cl.daemon.paho_lean import TESTED_PAHO, client_class

    installed = ".".join(paho.mqtt.__version__.split(".")[:2])
    assert client_class() is (LeanClient if installed in TESTED_PAHO else mqtt.Client)
    monkeypatch.setattr(paho.mqtt, "__version__", "2.9.0")
    assert client_class() is mqtt.Client
    monkeypatch.setattr(paho.mqtt, "__version__", "2.2.0")
    monkeypatch.delattr(mqtt.Client, "_handle_pubackcomp")
    assert client_class() is mqtt.Client
