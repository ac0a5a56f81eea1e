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


def _client(cls: type, v5: bool, chunks: list[bytes], setup: Any = None
            ) -> tuple[Any, list[tuple[Any, ...]], socket.socket]:
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
    if setup is not None:
        setup(client, got)
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


_BATCH = [("t/predictions", b"p%d" % i * (i % 5), (1, 1, 0, 1, 1, 2)[i % 6], i % 4 == 0) for i in range(40)]


def _published(cls: type, v5: bool, lean: bool) -> tuple[Any, socket.socket]:
    client, _, b = _client(cls, v5, [])
    client.publish("t/status", b"online", qos=1)  # paho's own, before: the order on the wire must hold
    if lean:
        client.publish_many(_BATCH)
    else:
        for topic, payload, qos, retain in _BATCH:
            client.publish(topic, payload, qos=qos, retain=retain)
    return client, b


def _held(client: Any) -> list[tuple[Any, ...]]:
    return [(m.mid, m.topic, bytes(m.payload), m.qos, m.retain, m.state, m.dup) for m in client._out_messages.values()]


@pytest.mark.parametrize("v5", [True, False])
def test_publish_many_writes_and_holds_what_pahos_publish_does(v5: bool) -> None:
    ref, ref_b = _published(mqtt.Client, v5, lean=False)
    lean, lean_b = _published(LeanClient, v5, lean=True)
    assert _written(lean_b) == _written(ref_b)
    assert _held(lean) == _held(ref) and lean._inflight_messages == ref._inflight_messages
    for client, b in ((ref, ref_b), (lean, lean_b)):  # every PUBACK completes its publish
        b.sendall(b"".join(b"\x40\x02" + struct.pack("!H", m.mid) for m in list(client._out_messages.values())
                           if m.qos == 1))
        for _ in range(60):
            client.loop_read()
    assert _held(lean) == _held(ref) and lean._inflight_messages == ref._inflight_messages
    assert all(m[3] == 2 for m in _held(lean))  # only the QoS 2 ones wait (for their PUBREC)


@pytest.mark.parametrize("v5", [True, False])
def test_publishes_in_flight_are_sent_again_on_reconnect_as_pahos(v5: bool) -> None:
    sent = []
    for cls, lean in ((mqtt.Client, False), (LeanClient, True)):
        client, b = _published(cls, v5, lean)
        _written(b)
        client._messages_reconnect_reset()
        b.sendall(b"\x20\x03\x01\x00\x00" if v5 else b"\x20\x02\x01\x00")  # CONNACK, session present
        client._state = _ConnectionState.MQTT_CS_CONNECT_ASYNC
        for _ in range(5):
            client.loop_read()
        sent.append(_written(b))
    assert sent[0] == sent[1] and len(sent[1]) > 100  # the same DUP publishes, in the same order


def test_ack_many_writes_what_pahos_ack_does() -> None:
    acks = [(i + 1, (1, 1, 2, 0, 1)[i % 5]) for i in range(30)]
    written = []
    for cls in (mqtt.Client, LeanClient):
        client, _, b = _client(cls, True, [])
        if cls is LeanClient:
            client.ack_many(acks)
        else:
            for mid, qos in acks:
                client.ack(mid, qos)
        written.append(_written(b))
    assert written[0] == written[1] and len(written[1]) == 4 * 24


@pytest.mark.parametrize("v5", [True, False])
@pytest.mark.parametrize("piece", [0, 3, 1000])
def test_runs_of_plain_publishes_reach_on_publishes_as_paho_delivers_them(v5: bool, piece: int) -> None:
    """With on_publishes set, runs of QoS 1 publishes without properties come in lists, everything else through
    on_message as before: together, the same messages in the same order as paho's, and the same bytes written."""
    data = _stream(v5)
    chunks = [data] if not piece else [data[i:i + piece] for i in range(0, len(data), piece)]
    _, ref_got, ref_b = _client(mqtt.Client, v5, chunks)
    runs: list[int] = []

    def setup(client: Any, got: list[tuple[Any, ...]]) -> None:
        def on_publishes(msgs: list[tuple[str, bytes, int, bool, bool]]) -> None:
            runs.append(len(msgs))
            for topic, payload, mid, dup, retain in msgs:
                got.append((topic, payload, mid, 1, dup, retain))
                client.ack(mid, 1)

        client.on_publishes = on_publishes

    _, lean_got, lean_b = _client(LeanClient, v5, chunks, setup)
    assert lean_got == ref_got and len(ref_got) == 48
    assert _written(lean_b) == _written(ref_b)
    if piece != 3:  # 3-byte fragments never hold a whole packet: paho's byte-wise path takes them all
        assert sum(runs) >= 15 and max(runs) > 1


def test_a_run_stops_at_a_topic_that_is_not_utf8() -> None:
    a, b = socket.socketpair()
    sock = BatchedSocket(a)
    good = _publish(b"t/samples", b"x", 1, 1, True)
    b.sendall(good + _publish(b"t/\xff", b"y", 1, 2, True) + good)
    assert sock.take_packet() is not None and sock.take_packet() is not None  # read, then put back by hand
    sock._rpos = 0
    names: dict[bytes, str] = {}
    assert [m[2] for m in sock.take_publishes(True, 10, names)] == [1]
    assert sock.take_packet()[1].startswith(b"\x00\x03t/\xff")  # left to paho, which reports it
    assert [m[2] for m in sock.take_publishes(True, 10, names)] == [1] and names == {b"t/samples": "t/samples"}
    a.close()
    b.close()
