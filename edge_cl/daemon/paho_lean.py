"""paho's client with lean paths for the packets every message brings: its PUBLISH in and, for the prediction,
a PUBACK back.

paho spends ~35 us on a received MQTT 5 PUBLISH (per-byte reads, a Properties object even when the packet has
none, an MQTTMessage with its own Condition, topic-filter matching) and ~25 us on a PUBACK: over half the network
thread's time in a burst (issue #27). Here a whole packet is taken from the socket's read buffer at once
(:class:`BatchedSocket`), a QoS 1 PUBLISH without properties goes to ``on_message`` as a small message object
(topic, payload, mid, qos, dup, retain), and a PUBACK without properties completes its publish through paho's own
bookkeeping. Anything else (other packet types, QoS 0 or 2, properties, reason codes, a
fragment) takes paho's path unchanged. Per-topic callbacks (``message_callback_add``) are not supported: the lean
path skips their matching.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_cl.daemon.socket_batch import BatchedSocket, write_varint

log = logging.getLogger("edge_cl.daemon")

_PUBLISH = 0x30
_SUCCESS = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
_CONNECTED = mqtt._ConnectionState.MQTT_CS_CONNECTED
# The paho minor versions whose private packet handlers the lean paths were checked against
# (tests/daemon/test_paho_lean.py), and the private methods they rely on.
TESTED_PAHO = ("2.1", "2.2")
_PRIVATE = ("_packet_read", "_packet_handle", "_handle_publish", "_handle_pubackcomp", "_do_on_publish",
            "_create_socket", "_easy_log", "_raise_for_invalid_topic", "_mid_generate", "loop_write")


def client_class() -> type[mqtt.Client]:
    """:class:`LeanClient` on a paho it was tested against; paho's own ``Client`` on any other (an upgrade of paho
    costs the daemon speed, never a message)."""
    import paho.mqtt

    version = str(getattr(paho.mqtt, "__version__", ""))
    if ".".join(version.split(".")[:2]) in TESTED_PAHO and all(hasattr(mqtt.Client, n) for n in _PRIVATE):
        return LeanClient
    log.info("paho-mqtt %s is not one the daemon's lean MQTT paths were tested with (%s): using paho's own "
             "client (slower per message, same behaviour)", version or "?", ", ".join(TESTED_PAHO))
    return mqtt.Client


class LeanMessage:
    """What ``on_message`` gets on the lean path: the fields of paho's MQTTMessage the daemon reads."""

    __slots__ = ("dup", "mid", "payload", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, mid: int, qos: int, dup: bool, retain: bool) -> None:
        self.topic = topic
        self.payload = payload
        self.mid = mid
        self.qos = qos
        self.dup = dup
        self.retain = retain


class _UnwatchedInfo(mqtt.MQTTMessageInfo):  # type: ignore[misc]
    """The MQTTMessageInfo of every lean publish: nobody waits on it, so it holds no Condition (paho's costs ~3 us a
    message) and completing a publish touches nothing."""

    def __init__(self) -> None:
        self.mid = 0
        self._published = False
        self.rc = _SUCCESS
        self._iterpos = 0

    def _set_as_published(self) -> None:
        pass


_UNWATCHED = _UnwatchedInfo()


class LeanClient(mqtt.Client):  # type: ignore[misc]
    """paho's Client on a :class:`BatchedSocket`, with the lean paths above (manual acks assumed for QoS 1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What paho's decoder gives a PUBACK without reason code and properties; only an on_publish callback sees it.
        self._lean_ok = ReasonCode(PacketTypes.PUBACK)
        self._lean_props = Properties(PacketTypes.PUBACK)
        self._lean_topics: dict[str, bytes] = {}  # topic -> its length-prefixed UTF-8, checked once
        self._lean_names: dict[bytes, str] = {}  # a received topic's UTF-8 -> its str
        # Set by the user: takes each run of plain QoS 1 publishes at once, as (topic, payload, mid, dup, retain)
        # tuples, instead of on_message per message (manual acks only).
        self.on_publishes: Any = None

    def publish_many(self, items: Sequence[tuple[str, bytes, int, bool]]) -> None:
        """Publish ``(topic, payload, qos, retain)`` messages in order, as paho's ``publish`` would each.

        A connected client's QoS 1 messages go out as one packet write, each held in paho's ``_out_messages`` as
        paho holds its own (its PUBACK completes it, a reconnect sends it again), without the per-message
        MQTTMessageInfo, log formatting and queue entry paho builds: ~10 us a message, the largest cost of the
        daemon's publishing. Anything else takes paho's ``publish``.
        """
        lean = isinstance(self._sock, BatchedSocket) and self._state == _CONNECTED
        packets: list[bytes] = []
        v5 = b"\x00" if self._protocol == mqtt.MQTTv5 else b""
        now = mqtt.time_func()
        with self._out_message_mutex:
            out = self._out_messages
            for topic, payload, qos, retain in items:
                mid = self._last_mid + 1 if self._last_mid < 65535 else 1
                if not lean or qos != 1 or mid in out or not isinstance(payload, bytes):
                    self._queue_lean(packets)
                    self.publish(topic, payload, qos=qos, retain=retain)  # takes the mutex (re-entrant)
                    continue
                name = self._lean_topics.get(topic)
                if name is None:
                    mqtt.Client._raise_for_invalid_topic(topic.encode("utf-8"))
                    name = self._lean_topics[topic] = struct.pack("!H", len(topic.encode("utf-8"))) + topic.encode(
                        "utf-8")
                with self._mid_generate_mutex:
                    self._last_mid = mid
                msg = mqtt.MQTTMessage.__new__(mqtt.MQTTMessage)
                msg.timestamp, msg.state, msg.dup, msg.mid = now, mqtt.mqtt_ms_wait_for_puback, False, mid
                msg._topic, msg.payload, msg.qos, msg.retain = name[2:], payload, 1, bool(retain)
                msg.info, msg.properties = _UNWATCHED, None
                out[mid] = msg
                self._inflight_messages += 1
                packets.append(bytes([0x32 | bool(retain)]) + write_varint(len(name) + 2 + len(v5) + len(payload)) + name
                               + struct.pack("!H", mid) + v5 + payload)
            self._queue_lean(packets)

    def ack_many(self, acks: Sequence[tuple[int, int]]) -> None:
        """Acknowledge ``(mid, qos)`` received messages in order, as paho's ``ack`` would each; the QoS 1 ones of a
        connected client as one packet write (paho's ``ack`` costs ~3 us a message)."""
        packets: list[bytes] = []
        lean = isinstance(self._sock, BatchedSocket) and self._state == _CONNECTED and self._manual_ack
        for mid, qos in acks:
            if lean and qos == 1:
                packets.append(b"\x40\x02" + struct.pack("!H", mid))
            elif qos:
                self._queue_lean(packets, mqtt.PUBACK)
                self.ack(mid, qos)
        self._queue_lean(packets, mqtt.PUBACK)

    def _queue_lean(self, packets: list[bytes], command: int = mqtt.PUBLISH) -> None:
        """Queue ``packets`` as one entry of paho's outgoing queue (behind what paho queued before) and write."""
        if not packets:
            return
        data = b"".join(packets)
        packets.clear()
        self._out_packet.append({"command": command, "mid": 0, "qos": 1, "pos": 0, "to_process": len(data),
                                 "packet": data, "info": _UNWATCHED})
        self.loop_write()

    def message_callback_add(self, sub: str, callback: Any) -> None:
        raise NotImplementedError("LeanClient delivers every message to on_message (no per-topic callbacks)")

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        # Nagle's algorithm held a small write (a prediction after a PUBACK) until the broker's delayed ACK; the
        # socket wrapper already sends a turn's packets in one write.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return BatchedSocket(sock)

    def _packet_read(self) -> Any:
        sock = self._sock
        if self._in_packet["command"] == 0 and isinstance(sock, BatchedSocket):
            if self.on_publishes is not None and self._manual_ack:
                run = sock.take_publishes(self._protocol == mqtt.MQTTv5, 256, self._lean_names)
                if run:
                    return self._deliver(run)
            if self.on_publish is None and self._max_inflight_messages == 0:
                mids = sock.take_pubacks(256)
                if mids:
                    return self._complete(mids)
            got = sock.take_packet()
            if got is not None:
                return self._lean_handle(*got)
        return super()._packet_read()

    def _complete(self, mids: list[int]) -> Any:
        """Complete the publishes of a run of plain PUBACKs as paho's _do_on_publish does when there is no
        on_publish callback and no in-flight limit (~5 us a PUBACK through paho's path)."""
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        with self._out_message_mutex:
            out = self._out_messages
            for mid in mids:
                msg = out.pop(mid, None)
                if msg is None:
                    continue  # unknown: ignored, as paho's own path does
                msg.info._set_as_published()
                if msg.qos > 0:
                    self._inflight_messages -= 1
        return _SUCCESS

    def _deliver(self, msgs: list[tuple[str, bytes, int, bool, bool]]) -> Any:
        """Hand a run of QoS 1 publishes to ``on_publishes`` as (topic, payload, mid, dup, retain) tuples."""
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        with self._in_callback_mutex:
            try:
                self.on_publishes(msgs)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publishes: %s", err)
                if not self.suppress_exceptions:
                    raise
        return _SUCCESS

    def _lean_handle(self, command: int, body: bytes) -> Any:
        """Handle one whole packet as paho's _packet_read does once it has read it."""
        packet = self._in_packet
        packet["command"] = command
        packet["remaining_length"] = len(body)
        packet["have_remaining"] = 1
        packet["packet"] = body
        packet["to_process"] = 0
        packet["pos"] = 0
        try:
            rc = self._packet_handle()
        except mqtt.MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc

    def _handle_publish(self) -> Any:
        header = self._in_packet["command"]
        body = self._in_packet["packet"]
        if (header & 0x06) != 0x02 or not self._manual_ack or len(body) < 4:
            return super()._handle_publish()
        slen = (body[0] << 8) | body[1]
        pos = 2 + slen
        v5 = self._protocol == mqtt.MQTTv5
        if slen == 0 or len(body) < pos + 2 + v5 or (v5 and body[pos + 2] != 0):
            return super()._handle_publish()  # properties (or an alias with an empty topic): paho decodes them
        try:
            topic = bytes(body[2:pos]).decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()
        msg = LeanMessage(topic, bytes(body[pos + 2 + v5:]), (body[pos] << 8) | body[pos + 1], 1,
                          bool(header & 0x08), bool(header & 0x01))
        with self._callback_mutex:
            on_message = self.on_message
        if on_message:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, msg)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        return _SUCCESS

    def _handle_pubackcomp(self, cmd: Any) -> Any:
        body = self._in_packet["packet"]
        # A reason code alone (Mosquitto's 0x10 "no matching subscribers") matters only to an on_publish callback.
        if cmd != "PUBACK" or not (len(body) == 2 or (len(body) == 3 and self.on_publish is None)):
            return super()._handle_pubackcomp(cmd)
        mid = (body[0] << 8) | body[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, self._lean_ok, self._lean_props)
        return _SUCCESS
