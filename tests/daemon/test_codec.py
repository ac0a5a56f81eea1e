"""Tests of edge_cl.daemon.codec: every bad input becomes a Bad with the right reason, never an exception."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_cl.daemon.codec import Bad, BadReason, Label, MessageCodec, Sample, encode_binary, encode_json

J = MessageCodec("json", 4, 3, max_payload_bytes=512)
B = MessageCodec("binary", 4, 3, max_payload_bytes=512)


def test_json_roundtrip() -> None:
    s = J.decode_sample(encode_json("a", [1, 2, 3, 4], 2, ts=5.0))
    assert isinstance(s, Sample) and s.id == "a" and s.y == 2 and s.ts == 5.0
    np.testing.assert_array_equal(s.x, np.array([1, 2, 3, 4], dtype=np.float32))
    assert J.decode_sample(encode_json("b", [0, 0, 0, 0])).y is None  # type: ignore[union-attr]


def test_binary_roundtrip() -> None:
    x = np.array([0.5, -1, 2, 3], dtype=np.float32)
    for y in (None, 1):
        s = B.decode_sample(encode_binary("id-1", x, y))
        assert isinstance(s, Sample) and s.id == "id-1" and s.y == y
        np.testing.assert_array_equal(s.x, x)
    assert B.message_id(encode_binary("id-1", x)) == "id-1"
    assert B.is_labeled(encode_binary("z", x, 0)) and not B.is_labeled(encode_binary("z", x))


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", BadReason.MALFORMED),
    (b"[1, 2]", BadReason.MALFORMED),
    (json.dumps({"x": [1, 2, 3, 4]}).encode(), BadReason.MALFORMED),
    (json.dumps({"id": "a", "x": [1, "2", 3, 4]}).encode(), BadReason.MALFORMED),
    (json.dumps({"id": "a", "x": [1, 2, 3]}).encode(), BadReason.SHAPE),
    (b'{"id": "a", "x": [1, NaN, 3, 4]}', BadReason.NON_FINITE),
    (b'{"id": "a", "x": [1, Infinity, 3, 4]}', BadReason.NON_FINITE),
    (b'{"id": "a", "x": [1, 1e999, 3, 4]}', BadReason.NON_FINITE),
    (json.dumps({"id": "a", "x": [1, 2, 3, 4], "y": 3}).encode(), BadReason.LABEL_RANGE),
    (json.dumps({"id": "a", "x": [1, 2, 3, 4], "y": -1}).encode(), BadReason.LABEL_RANGE),
    (json.dumps({"id": "a", "x": [1, 2, 3, 4], "y": 1.5}).encode(), BadReason.LABEL_RANGE),
    (json.dumps({"id": "a", "x": [1, 2, 3, 4], "y": True}).encode(), BadReason.LABEL_RANGE),
    (json.dumps({"id": "a", "x": [1] * 200}).encode(), BadReason.TOO_LARGE),
    (encode_binary("a", np.zeros(4)), BadReason.UNKNOWN_FORMAT),
])
def test_json_bad_inputs(payload: bytes, reason: BadReason) -> None:
    got = J.decode_sample(payload)
    assert isinstance(got, Bad) and got.reason == reason, got


@pytest.mark.parametrize("x, shape", [([[1], [2], [3], [4]], "(4, 1)"), ([[1, 2], [3, 4]], "(2, 2)")])
def test_nested_x_is_a_shape_error_naming_the_shape(x: list, shape: str) -> None:
    got = J.decode_sample(json.dumps({"id": "a", "x": x, "y": 1}).encode())
    assert isinstance(got, Bad) and got.reason == BadReason.SHAPE and got.id == "a", got
    assert f"shape {shape}" in got.detail and "flat list of 4 numbers" in got.detail, got.detail


@pytest.mark.parametrize("payload, reason", [
    (encode_binary("a", np.zeros(3)), BadReason.SHAPE),
    (encode_binary("a", np.array([0, np.nan, 0, 0])), BadReason.NON_FINITE),
    (encode_binary("a", np.zeros(4), 7), BadReason.LABEL_RANGE),
    (encode_binary("a", np.zeros(4))[:5], BadReason.MALFORMED),
    (b"EC\x02\x00\x01\x00a" + b"\0" * 16, BadReason.UNKNOWN_FORMAT),
    (encode_json("a", [1, 2, 3, 4]), BadReason.UNKNOWN_FORMAT),
])
def test_binary_bad_inputs(payload: bytes, reason: BadReason) -> None:
    got = B.decode_sample(payload)
    assert isinstance(got, Bad) and got.reason == reason, got


def test_labels() -> None:
    assert J.decode_label(b'{"id": "a", "y": 2}') == Label("a", 2)
    assert J.decode_label(b'{"id": "a", "y": 9}').reason == BadReason.LABEL_RANGE  # type: ignore[union-attr]
    assert J.decode_label(b'{"y": 1}').reason == BadReason.MALFORMED  # type: ignore[union-attr]
    assert J.decode_label(b"\xff").reason == BadReason.MALFORMED  # type: ignore[union-attr]


def test_message_id() -> None:
    assert J.message_id(encode_json("abc", [1, 2, 3, 4])) == "abc"
    assert J.message_id(b"garbage") is None
    assert J.message_id(b"x" * 1000) is None


def test_codec_arguments_checked() -> None:
    with pytest.raises(ValueError, match="input.format"):
        MessageCodec("xml", 4, 3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    for codec in (J, B):
        got = codec.decode_sample(payload)
        assert isinstance(got, (Sample, Bad))
        if isinstance(got, Sample):
            assert got.x.shape == (4,) and np.isfinite(got.x).all()
        assert isinstance(codec.decode_label(payload), (Label, Bad))
        codec.message_id(payload)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="[]{}a,\"", max_size=80), st.integers(0, 40))
def test_the_bracket_guard_counts_as_counting_does(text: str, limit: int) -> None:
    from edge_cl.daemon.codec import _brackets_over

    payload = text.encode()
    assert _brackets_over(payload, limit) == (payload.count(b"[") + payload.count(b"{") > limit)
