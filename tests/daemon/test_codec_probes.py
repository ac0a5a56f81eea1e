"""The chaos run's probes (issue #12) at the codec: each raised, or was mis-read, before the fix."""

from __future__ import annotations

import json
import struct

import pytest

from edge_cl.daemon.codec import Bad, BadReason, MessageCodec, encode_json

J = MessageCodec("json", 24, 3)
B = MessageCodec("binary", 24, 3)
DEEP = b"[" * 100_000 + b"]" * 100_000
ZERO_ID = b"EC\x01\x01\x00\x00" + struct.pack("<i", 1) + struct.pack("<24f", *[0.5] * 24)
SURROGATE_ESCAPED = b'{"id": "bad-\\ud800", "y": 1}'
SURROGATE_BYTES = b'{"id": "bad-\xed\xa0\x80", "y": 1}'


def test_deep_json_is_malformed_not_a_recursion_error() -> None:
    assert J.message_id(DEEP) is None
    for codec in (J, MessageCodec("json", 24, 3, max_payload_bytes=1 << 21)):
        got = codec.decode_sample(DEEP)
        assert isinstance(got, Bad) and got.reason in (BadReason.MALFORMED, BadReason.TOO_LARGE)
        assert isinstance(codec.decode_label(DEEP), Bad)
    nested = b'{"id": "a", "x": ' + b"[" * 1500 + b"]" * 1500 + b"}"
    got = J.decode_sample(nested)
    assert isinstance(got, Bad) and got.reason == BadReason.MALFORMED and "nested" in got.detail


@pytest.mark.parametrize("payload", [SURROGATE_ESCAPED, SURROGATE_BYTES])
def test_lone_surrogate_id_is_malformed(payload: bytes) -> None:
    got = J.decode_label(payload)
    assert isinstance(got, Bad) and got.reason == BadReason.MALFORMED and "surrogate" in got.detail
    sample = payload.replace(b'"y": 1', b'"x": ' + json.dumps([0.0] * 24).encode())
    got = J.decode_sample(sample)
    assert isinstance(got, Bad) and got.reason == BadReason.MALFORMED
    assert J.message_id(sample) is None


def test_binary_zero_length_id_is_malformed_and_has_no_dedupe_key() -> None:
    got = B.decode_sample(ZERO_ID)
    assert isinstance(got, Bad) and got.reason == BadReason.MALFORMED
    assert B.message_id(ZERO_ID) is None  # was "": every such message a duplicate of the first


def test_ids_are_bounded_in_utf8_bytes() -> None:
    x = [0.0] * 24
    assert not isinstance(J.decode_sample(encode_json("é" * 128, x)), Bad)  # 256 bytes
    assert isinstance(J.decode_sample(encode_json("é" * 129, x)), Bad)


