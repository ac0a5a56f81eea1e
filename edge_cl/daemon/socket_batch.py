"""A socket wrapper that turns paho's per-packet system calls into a few per network-loop turn.

paho reads a packet with one ``recv`` for its first byte, one per byte of its length and one for its body, and
writes each packet (every PUBACK the daemon sends, every prediction) with a ``send`` of its own: about eight
system calls a message, a third of the network thread's time in a burst (issue #27). This wrapper reads what the
kernel has in one large ``recv`` and serves paho's small reads from it (``pending`` tells paho's loop that bytes
wait, as an SSL socket's does), and while a :meth:`BatchedSocket.batch` is open it collects writes and sends them
together when the batch closes. Writes outside a batch go out at once, as before.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

READ_SIZE = 1 << 18  # bytes asked of the kernel per recv: many messages of a burst at once
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def read_varint(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """MQTT's variable byte integer (a remaining length, a property length) at ``buf[pos:end]``: its value and the
    position after it; None when it runs past ``end`` or past the 4 bytes MQTT allows."""
    n, shift = 0, 0
    while pos < end and shift <= 21:
        b = buf[pos]
        n |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return n, pos
        shift += 7
    return None


def write_varint(n: int) -> bytes:
    """MQTT's variable byte integer for ``n`` (a remaining length, a property length)."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class BatchedSocket:
    """Wraps a connected (plain or TLS) socket; paho uses it like the socket itself."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()
        self._retry = 0  # length of a send that would block: TLS wants the retry with the same bytes
        self._batching = 0
        self._error: OSError | None = None  # a failed flush or read, raised to paho on its next read or write
        self._eof = False

    # ---- reading ------------------------------------------------------------------------------------------------
    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes, from what the last large read left, else from the socket (which may raise
        BlockingIOError / SSLWantReadError as it would for paho)."""
        self._raise_error()
        left = len(self._rbuf) - self._rpos
        if left <= 0:
            if self._eof:
                return b""
            data = self._sock.recv(max(bufsize, READ_SIZE))
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos, left = data, 0, len(data)
        n = min(bufsize, left)
        out = self._rbuf[self._rpos:self._rpos + n]
        self._rpos += n
        if self._rpos >= len(self._rbuf):
            self._rbuf, self._rpos = b"", 0
        return out

    def take_packet(self) -> tuple[int, bytes] | None:
        """The next whole MQTT packet as (first byte, body after the remaining length), taken from what was read,
        reading once more if nothing waits; None when no whole packet is at hand (paho's own byte-wise read then
        goes on, and meets any socket error or end of stream itself)."""
        if self._error is not None or len(self._rbuf) - self._rpos < 2:
            if len(self._rbuf) > self._rpos:
                return None  # a fragment: left to paho's byte-wise read
            try:
                data = self._sock.recv(READ_SIZE)
            except _WOULD_BLOCK:
                return None
            except OSError as exc:
                self._error = exc
                return None
            if not data:  # end of stream: recv() gives paho the empty read it reports as a lost connection
                self._eof = True
                return None
            self._rbuf, self._rpos = data, 0
        buf, pos = self._rbuf, self._rpos
        end = len(buf)
        length = read_varint(buf, pos + 1, end)
        if length is None:
            return None
        n, k = length
        if k + n > end:
            return None
        self._rpos = k + n
        if self._rpos >= end:
            self._rbuf, self._rpos = b"", 0
        return buf[pos], buf[k:k + n]

    def take_publishes(self, v5: bool, limit: int, names: dict[bytes, str]
                       ) -> list[tuple[str, bytes, int, bool, bool]]:
        """The run of whole QoS 1 PUBLISH packets without properties at the head of what was read, at most
        ``limit``, as (topic, payload, packet id, dup, retain); stops at anything else, a topic that is not UTF-8
        included (left to :meth:`take_packet` and paho). Reads nothing from the socket. ``names`` caches the
        topics decoded."""
        out: list[tuple[str, bytes, int, bool, bool]] = []
        if self._error is not None:
            return out
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        while pos < end and len(out) < limit:
            first = buf[pos]
            if first & 0xF6 != 0x32:  # PUBLISH with QoS 1 (DUP and RETAIN may be set)
                break
            length = read_varint(buf, pos + 1, end)
            if length is None:
                break
            n, k = length
            stop = k + n
            if stop > end or n < 4:
                break
            slen = (buf[k] << 8) | buf[k + 1]
            at = k + 2 + slen  # the packet id
            if slen == 0 or at + 2 + v5 > stop or (v5 and buf[at + 2] != 0):
                break  # properties, or a topic alias: paho's path
            raw = buf[k + 2:at]
            topic = names.get(raw)
            if topic is None:
                try:
                    topic = raw.decode("utf-8")
                except UnicodeDecodeError:
                    break
                if len(names) < 1024:
                    names[raw] = topic
            out.append((topic, buf[at + 2 + v5:stop], (buf[at] << 8) | buf[at + 1], bool(first & 0x08),
                        bool(first & 0x01)))
            pos = stop
        if pos >= end:
            self._rbuf, self._rpos = b"", 0
        else:
            self._rpos = pos
        return out

    def take_pubacks(self, limit: int) -> list[int]:
        """The packet ids of the run of plain PUBACKs (no reason code, no properties) at the head of what was read,
        at most ``limit``; reads nothing from the socket."""
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        mids: list[int] = []
        if self._error is not None:
            return mids
        while pos + 4 <= end and len(mids) < limit and buf[pos] == 0x40 and buf[pos + 1] == 2:
            mids.append((buf[pos + 2] << 8) | buf[pos + 3])
            pos += 4
        if pos >= end:
            self._rbuf, self._rpos = b"", 0
        else:
            self._rpos = pos
        return mids

    def pending(self) -> int:
        """Bytes readable without touching the socket (paho's loop then skips its wait and reads)."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._rbuf) - self._rpos + inner

    # ---- writing ------------------------------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Take ``data`` whole: buffered inside a batch (or behind bytes a full socket left), else sent now."""
        self._raise_error()
        self._wbuf += data
        if not self._batching:
            self.flush()
            self._raise_error()
        return len(data)

    @property
    def unsent(self) -> int:
        """Bytes taken from paho and not yet handed to the kernel (a full socket, or a batch still open)."""
        return len(self._wbuf)

    def flush(self) -> None:
        """Send what is buffered, as far as the socket takes it now; an error is kept for paho's next call."""
        try:
            while self._wbuf:
                size = self._retry or len(self._wbuf)
                try:
                    sent = self._sock.send(self._wbuf[:size])
                except _WOULD_BLOCK:
                    self._retry = size
                    return
                self._retry = 0
                del self._wbuf[:sent]
        except OSError as exc:
            self._error = exc

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Collect writes until the block ends, then send them together."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching:
                self.flush()

    def _raise_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    # ---- the rest of the socket -------------------------------------------------------------------------------
    def close(self) -> None:
        """Send what is buffered (briefly blocking, e.g. paho's DISCONNECT) and close."""
        try:
            if self._wbuf and self._error is None:
                self._sock.settimeout(1.0)
                self._sock.sendall(bytes(self._wbuf))
        except OSError:
            pass  # closing anyway; the broker resends what we did not acknowledge
        finally:
            self._wbuf.clear()
            self._sock.close()

    def fileno(self) -> int:
        """The socket's descriptor (for select)."""
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        """As the socket's."""
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
