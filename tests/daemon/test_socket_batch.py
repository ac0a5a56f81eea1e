"""Tests of edge_cl.daemon.socket_batch: paho's small reads served from one large read, writes collected in a
batch and sent together, a full socket keeping what it did not take, errors surfacing on the next call."""

from __future__ import annotations

import socket

import pytest

from edge_cl.daemon.socket_batch import BatchedSocket


class FakeSock:
    def __init__(self, chunks: list[bytes] | None = None, take: int | None = None) -> None:
        self.chunks = list(chunks or [])
        self.sent: list[bytes] = []
        self.take = take  # bytes a send accepts, None: all; 0: would block
        self.recv_calls = 0
        self.closed = False

    def recv(self, n: int) -> bytes:
        self.recv_calls += 1
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)[:n]

    def send(self, data: bytes) -> int:
        if self.take == 0:
            raise BlockingIOError
        n = len(data) if self.take is None else min(self.take, len(data))
        self.sent.append(bytes(data[:n]))
        return n

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def settimeout(self, t: float) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_small_reads_come_from_one_large_read() -> None:
    raw = FakeSock([b"abcdefgh", b"ij"])
    s = BatchedSocket(raw)
    got = [s.recv(1), s.recv(2), s.recv(1)]
    assert got == [b"a", b"bc", b"d"] and raw.recv_calls == 1 and s.pending() == 4
    assert s.recv(100) == b"efgh" and s.pending() == 0
    assert s.recv(1) == b"i" and s.recv(5) == b"j"
    with pytest.raises(BlockingIOError):
        s.recv(1)


def test_writes_in_a_batch_go_out_together() -> None:
    raw = FakeSock()
    s = BatchedSocket(raw)
    with s.batch():
        assert s.send(b"one") == 3 and s.send(b"two") == 3
        assert raw.sent == [] and s.unsent == 6
    assert raw.sent == [b"onetwo"] and s.unsent == 0
    s.send(b"now")  # outside a batch: at once
    assert raw.sent[-1] == b"now"


def test_a_full_socket_keeps_the_rest_and_retries_the_same_bytes() -> None:
    raw = FakeSock(take=0)
    s = BatchedSocket(raw)
    with s.batch():
        s.send(b"abc")
    assert s.unsent == 3 and raw.sent == []
    s.send(b"def")  # queued behind: order kept
    raw.take = 2
    s.flush()
    assert b"".join(raw.sent) == b"abcdef" and s.unsent == 0


def test_a_failed_flush_is_raised_on_the_next_call() -> None:
    raw = FakeSock()

    def broken(data: bytes) -> int:
        raise ConnectionResetError("gone")

    raw.send = broken  # type: ignore[method-assign]
    s = BatchedSocket(raw)
    with s.batch():
        s.send(b"x")
    with pytest.raises(ConnectionResetError):
        s.recv(1)


def test_close_sends_what_is_buffered() -> None:
    raw = FakeSock(take=0)
    s = BatchedSocket(raw)
    with s.batch():
        s.send(b"bye")
    s.close()
    assert raw.sent == [b"bye"] and raw.closed


def test_over_a_real_socket_pair() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    s = BatchedSocket(a)
    with s.batch():
        for i in range(100):
            s.send(bytes([i]))
    assert b.recv(1000) == bytes(range(100))
    b.sendall(b"hello")
    assert s.recv(2) == b"he" and s.pending() == 3 and s.recv(3) == b"llo"
    s.close()
    b.close()


def test_take_packet_gives_whole_packets_and_leaves_fragments_to_recv() -> None:
    big = b"\x32\x82\x01" + b"p" * 130  # remaining length 130 in two bytes
    raw = FakeSock([b"\x40\x02\x00\x01" + big + b"\x30\x05ab", b"cde", b""])
    s = BatchedSocket(raw)
    assert s.take_packet() == (0x40, b"\x00\x01")
    assert s.take_packet() == (0x32, b"p" * 130)
    assert s.take_packet() is None  # a fragment: paho reads it byte-wise
    assert s.recv(1) == b"\x30" and s.recv(1) == b"\x05" and s.recv(5) == b"ab"
    assert s.recv(3) == b"cde"
    assert s.take_packet() is None and s.recv(1) == b""  # end of stream: paho sees the empty read
