"""MQTT clients for load generation that cost the machine next to nothing per message (raw sockets, no paho).

A benchmark that shares two cores with the daemon must not spend a core of its own on its clients: paho's
publisher and subscriber cost ~190 us a message together, as much as the daemon. Here the publisher encodes
every PUBLISH packet before the clock starts and writes them with one ``sendall`` per block, and the subscriber
parses packets straight from the socket buffer and acknowledges each read with one write. QoS 1 both ways,
like paho's clients did; MQTT 3.1.1 for the publisher, MQTT 5 for the subscriber (its Receive Maximum lifts the
broker's in-flight window of 20 for 3.1.1 clients).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence

from edge_cl.daemon.socket_batch import read_varint
from edge_cl.daemon.socket_batch import write_varint as varint

_U16 = struct.Struct(">H")
_PUBACK = 0x40
_PUBLISH_QOS1 = 0x32


def _string(s: str) -> bytes:
    raw = s.encode()
    return _U16.pack(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def publish_packets(topic: str, payloads: Sequence[bytes]) -> list[bytes]:
    """QoS 1 PUBLISH packets (MQTT 3.1.1) for ``payloads``, packet ids 1..65535 cycling (the broker acknowledges a
    QoS 1 publish at once, so an id is free again long before it comes round)."""
    head = _string(topic)
    return [_packet(_PUBLISH_QOS1, head + _U16.pack(i % 65535 + 1) + p) for i, p in enumerate(payloads)]


def split_packets(buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Complete packets at the start of ``buf`` as (first byte, body), and how many bytes they took."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while pos + 2 <= end:
        length = read_varint(buf, pos + 1, end)
        if length is None:
            break
        n, k = length
        if k + n > end:
            break
        out.append((buf[pos], bytes(buf[k:k + n])))
        pos = k + n
    return out, pos


class WireClient:
    """One MQTT connection on a plain socket; :meth:`connect` waits for the CONNACK."""

    def __init__(self, port: int, client_id: str, *, v5: bool = False, host: str = "127.0.0.1") -> None:
        self.v5 = v5
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        # CONNECT: clean session, keepalive 0 (no pings needed for a run); v5 asks for the largest Receive Maximum.
        props = (varint(3) + b"\x21\xff\xff") if v5 else b""
        body = _string("MQTT") + bytes([5 if v5 else 4, 0x02]) + _U16.pack(0) + props + _string(client_id)
        self.sock.sendall(_packet(0x10, body))
        first, ack = self.read_one()
        code = ack[1] if len(ack) > 1 else 0xFF
        if first >> 4 != 2 or code != 0:
            raise ConnectionError(f"broker refused {client_id!r}: CONNACK {first:#x} code {code:#x}")
        # Blocking from here on, before any reader thread starts: changing the timeout while another thread is
        # inside sendall() can make it raise BlockingIOError.
        self.sock.settimeout(None)

    def read_one(self) -> tuple[int, bytes]:
        """The next packet (blocking); for the handshake only."""
        while True:
            got, _ = split_packets(self._buf)
            if got:
                first, body = got[0]
                del self._buf[:1 + len(varint(len(body))) + len(body)]
                return first, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self._buf += chunk

    def packets(self) -> Iterator[tuple[float, list[tuple[int, bytes]]]]:
        """Each socket read's whole packets, with the time of the read, until the connection closes (reader
        threads; blocking)."""
        buf, sock = self._buf, self.sock
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            buf += chunk
            got, used = split_packets(buf)
            del buf[:used]
            yield now, got

    def subscribe(self, topics: Sequence[str], qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK."""
        body = _U16.pack(1) + (varint(0) if self.v5 else b"") + b"".join(_string(t) + bytes([qos]) for t in topics)
        self.sock.sendall(_packet(0x82, body))
        first, _ = self.read_one()
        if first >> 4 != 9:
            raise ConnectionError(f"expected a SUBACK, got packet type {first >> 4}")

    def close(self) -> None:
        """Disconnect and close the socket."""
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


class Publisher:
    """Sends pre-encoded QoS 1 packets and counts the broker's PUBACKs (a reader thread of its own)."""

    def __init__(self, port: int, client_id: str = "wire-pub") -> None:
        self.client = WireClient(port, client_id)
        self.acked = 0
        self._done = threading.Event()
        self._want = -1
        self._reader = threading.Thread(target=self._read, name="wire-pub-acks", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for _, got in self.client.packets():
            self.acked += sum(1 for first, _ in got if first >> 4 == _PUBACK >> 4)
            if 0 <= self._want <= self.acked:
                self._done.set()

    def send(self, packets: Sequence[bytes], block: int = 256) -> None:
        """Write ``packets`` as fast as the socket takes them (``block`` packets per write)."""
        for i in range(0, len(packets), block):
            self.client.sock.sendall(b"".join(packets[i:i + block]))

    def send_paced(self, packets: Sequence[bytes], rate: float) -> list[float]:
        """Write packet ``i`` at ``i / rate`` seconds from now (a steady stream); the time each was written."""
        t0 = time.perf_counter()
        sent = []
        for i, p in enumerate(packets):
            ahead = t0 + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            sent.append(time.perf_counter())
            self.client.sock.sendall(p)
        return sent

    def wait_acked(self, n: int, timeout: float) -> bool:
        """Wait until the broker acknowledged ``n`` publishes in all."""
        self._want = n
        if self.acked >= n:
            return True
        return self._done.wait(timeout)

    def close(self) -> None:
        """Disconnect."""
        self.client.close()


class Subscriber:
    """Receives QoS 1 publishes on its topics (MQTT 5, a reader thread), acknowledging each socket read with one
    write; keeps each payload with the time of the read that brought it."""

    def __init__(self, port: int, topics: Sequence[str], client_id: str = "wire-sub") -> None:
        self.client = WireClient(port, client_id, v5=True)
        self.client.subscribe(topics)
        self.messages: dict[str, list[bytes]] = {t: [] for t in topics}
        self.stamps: dict[str, list[float]] = {t: [] for t in topics}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="wire-sub", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        sock = self.client.sock
        messages, stamps = self.messages, self.stamps
        for now, got in self.client.packets():
            acks = []
            for first, body in got:
                if first >> 4 != 3:
                    continue
                n = _U16.unpack_from(body)[0]
                topic = body[2:2 + n].decode()
                pos = 2 + n
                if first & 0x06:  # QoS > 0: a packet id to acknowledge
                    acks.append(b"\x40\x02" + body[pos:pos + 2])
                    pos += 2
                props = read_varint(body, pos, len(body))  # MQTT 5 properties: skipped
                if props is None:
                    raise ValueError(f"a PUBLISH on {topic!r} with a malformed property length")
                plen, pos = props
                messages.setdefault(topic, []).append(body[pos + plen:])
                stamps.setdefault(topic, []).append(now)
            if acks:
                sock.sendall(b"".join(acks))
            with self._cond:
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def count(self, topic: str) -> int:
        """Messages received on ``topic`` so far."""
        return len(self.messages.get(topic, []))

    def wait_for(self, topic: str, n: int, timeout: float) -> bool:
        """Wait until ``n`` messages arrived on ``topic``."""
        end = time.monotonic() + timeout
        with self._cond:
            while self.count(topic) < n:
                left = end - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    return self.count(topic) >= n
                self._cond.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        """Disconnect."""
        self.client.close()
