"""The msgspec decoder (issue #27) against the json.loads decoder it replaced: over the fuzz corpus every message
gives the same sample or the same dead letter, reason and detail included."""

from __future__ import annotations

import json
from collections.abc import Iterator

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import edge_cl.daemon.codec as codec_module
from edge_cl.daemon.codec import Bad, MessageCodec, Sample, encode_json
from tests.daemon.fuzz_payloads import LABEL, kinds
from tests.daemon.test_codec_probes import DEEP, SURROGATE_BYTES, SURROGATE_ESCAPED

DIM, CLASSES, MAX_BYTES = 8, 3, 4096


class _Refuses:
    def decode(self, payload: bytes) -> object:
        raise msgspec.DecodeError("the old decoder: json.loads only")


@pytest.fixture
def old_decoder(monkeypatch: pytest.MonkeyPatch) -> Iterator[MessageCodec]:
    """A codec that decodes as before msgspec: the general path with json.loads alone."""

    class Old(MessageCodec):
        def _decode_json_typed(self, payload: bytes) -> None:
            return None

    yield Old("json", DIM, CLASSES, max_payload_bytes=MAX_BYTES)


def _decoded(codec: MessageCodec, topic: str, payload: bytes) -> object:
    got = codec.decode_label(payload) if topic == LABEL else codec.decode_sample(payload)
    if isinstance(got, Sample):
        return ("sample", got.id, got.x.dtype, got.x.tobytes(), got.y, got.ts)
    return got


def _old(old: MessageCodec, topic: str, payload: bytes) -> object:
    fast = codec_module._FAST_JSON
    codec_module._FAST_JSON = _Refuses()  # type: ignore[assignment]
    try:
        return _decoded(old, topic, payload)
    finally:
        codec_module._FAST_JSON = fast


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=kinds(DIM, CLASSES, MAX_BYTES))
def test_the_fast_decoder_gives_what_json_loads_gave(old_decoder: MessageCodec, message: tuple[str, str, bytes]):
    _, topic, payload = message
    new = MessageCodec("json", DIM, CLASSES, max_payload_bytes=MAX_BYTES)
    assert _decoded(new, topic, payload) == _old(old_decoder, topic, payload)


@pytest.mark.parametrize("payload", [
    DEEP, SURROGATE_BYTES, SURROGATE_ESCAPED,
    b'{"id": "a", "x": [NaN, 1, 2, 3, 4, 5, 6, 7]}', b'{"id": "a", "x": [1e400, 1, 2, 3, 4, 5, 6, 7]}',
    b'{"id": "a", "x": [1e39, 1, 2, 3, 4, 5, 6, 7]}', b'{"id": "a", "x": [true, 1, 2, 3, 4, 5, 6, 7]}',
    b'{"id": "a", "x": [1, 2, 3, 4, 5, 6, 7, 8], "y": true}', b'{"id": "a", "x": [1, 2, 3, 4, 5, 6, 7, 8], "y": 3}',
    b'{"id": "a", "x": [1, 2, 3, 4, 5, 6, 7, 8], "ts": Infinity}', b'{"id": "", "x": [1, 2, 3, 4, 5, 6, 7, 8]}',
    b'{"id": "a", "x": [1, 2, 3, 4, 5, 6, 7, 8], "x": [1, 2]}', b'{"id": "a", "x": [1, 2, 3, 4, 5, 6, 7, 8], "z": {}}',
    b'{"id": "a", "x": [123456789012345678901234567890, 1, 2, 3, 4, 5, 6, 7]}',
    "\ufeff".encode() + b'{"id": "a", "x": [1, 2, 3, 4, 5, 6, 7, 8]}',
    json.dumps({"id": "a", "x": [1.5] * 8}).encode("utf-16"),
])
def test_edge_cases_decode_as_before(old_decoder: MessageCodec, payload: bytes):
    new = MessageCodec("json", DIM, CLASSES, max_payload_bytes=MAX_BYTES)
    for topic in ("samples", LABEL):
        assert _decoded(new, topic, payload) == _old(old_decoder, topic, payload)


def test_valid_samples_take_the_typed_path():
    codec = MessageCodec("json", DIM, CLASSES)
    x = np.random.default_rng(0).standard_normal(DIM).astype(np.float32)
    payload = encode_json("s1", x, 2, ts=12.5)
    typed = codec._decode_json_typed(payload)
    assert isinstance(typed, Sample) and np.array_equal(typed.x, x)
    got = codec.decode_sample(payload)
    assert isinstance(got, Sample) and np.array_equal(got.x, x) and (got.y, got.ts) == (2, 12.5)
    assert isinstance(codec.decode_sample(b'{"id": "a", "x": [NaN]}'), Bad)
