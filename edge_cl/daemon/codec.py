"""Decoding and validation of sample and label messages; bad input becomes a value, never an exception.

Binary sample layout (little-endian), for high message rates::

    offset  size  field
    0       2     magic b"EC"
    2       1     version (1)
    3       1     flags: bit 0 = a label follows the id
    4       2     id_len (uint16), then id_len bytes of UTF-8 id
    ...     4     label (int32), only when flags bit 0 is set
    ...     4*D   features (float32 x D)
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from enum import Enum

import msgspec
import numpy as np

MAGIC = b"EC"
VERSION = 1
_HEAD = struct.Struct("<2sBBH")
_LABEL = struct.Struct("<i")
MAX_ID_LEN = 256
# A valid sample nests two levels ({"x": [...]}); 32 leaves room for extra fields while keeping json.loads
# far from Python's recursion limit, which a deeply nested payload would otherwise hit (RecursionError).
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class BadReason(str, Enum):
    """Why an input was rejected (the `reason` label of edge_cl_bad_inputs_total)."""

    MALFORMED = "malformed"          # not JSON / not the binary layout / missing fields
    SHAPE = "shape"                  # wrong number of features, or a nested x (its shape is named)
    NON_FINITE = "non_finite"        # NaN or Inf in the features
    LABEL_RANGE = "label_range"      # label not an int in [0, num_classes)
    TOO_LARGE = "too_large"          # payload over max_payload_bytes
    UNKNOWN_FORMAT = "unknown_format"  # binary where JSON expected, or neither
    INTERNAL = "internal"            # decoding or spooling raised: a bug, dead-lettered so the daemon goes on


@dataclass(frozen=True)
class Sample:
    """A validated sample: ``x`` float32 [D], ``y`` an int label or None."""

    id: str
    x: np.ndarray
    y: int | None
    ts: float | None = None


@dataclass(frozen=True)
class Label:
    """A delayed label for the sample with this id."""

    id: str
    y: int


@dataclass(frozen=True)
class Bad:
    """A rejected message: the reason, a short detail and the id when one could be read."""

    reason: BadReason
    detail: str
    id: str | None = None


@dataclass(frozen=True)
class MessageCodec:
    """Decodes messages for one input format, feature count and label range."""

    format: str  # "json" | "binary"
    dim: int
    num_classes: int
    max_payload_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.format not in ("json", "binary"):
            raise ValueError(f"input.format={self.format!r} is not supported; use 'json' or 'binary'")
        if self.dim < 1 or self.num_classes < 2:
            raise ValueError(f"dim={self.dim} must be >= 1 and num_classes={self.num_classes} >= 2")

    def message_id(self, payload: bytes) -> str | None:
        """The message's valid id, or None when it cannot be read (bounded like the decoders; never raises)."""
        if len(payload) > self.max_payload_bytes:
            return None
        if payload[:2] == MAGIC:
            if len(payload) < _HEAD.size:
                return None
            _, _, _, n = _HEAD.unpack_from(payload)
            try:
                mid: object = payload[_HEAD.size:_HEAD.size + n].decode("utf-8") if len(payload) >= _HEAD.size + n \
                    else None
            except UnicodeDecodeError:
                return None
            return mid if isinstance(mid, str) and id_problem(mid) is None else None
        obj = _parse_json(payload)
        mid = obj.get("id") if isinstance(obj, dict) else None
        return mid if isinstance(mid, str) and id_problem(mid) is None else None

    def is_labeled(self, payload: bytes) -> bool:
        """Cheap check whether a sample message carries a label (for the spool's drop policy)."""
        if payload[:2] == MAGIC and len(payload) >= _HEAD.size:
            return bool(payload[3] & 1)
        return b'"y"' in payload

    def decode_sample(self, payload: bytes) -> Sample | Bad:
        """Decode and validate one sample message."""
        if len(payload) > self.max_payload_bytes:
            return Bad(BadReason.TOO_LARGE, f"{len(payload)} bytes > max_payload_bytes={self.max_payload_bytes}")
        if payload[:2] == MAGIC:
            if self.format != "binary":
                return Bad(BadReason.UNKNOWN_FORMAT, "binary message on a json input", self._peek_id(payload))
            return self._decode_binary(payload)
        if self.format != "json":
            return Bad(BadReason.UNKNOWN_FORMAT, "message lacks the binary magic b'EC'")
        return self._decode_json(payload)

    def decode_label(self, payload: bytes) -> Label | Bad:
        """Decode a delayed-label message ``{"id": str, "y": int}``."""
        if len(payload) > self.max_payload_bytes:
            return Bad(BadReason.TOO_LARGE, f"{len(payload)} bytes > max_payload_bytes={self.max_payload_bytes}")
        obj = _parse_json(payload)
        if isinstance(obj, Bad):
            return Bad(obj.reason, f"label {obj.detail}")
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or "y" not in obj:
            return Bad(BadReason.MALFORMED, "label must be an object with string 'id' and int 'y'")
        problem = id_problem(obj["id"])
        if problem is not None:
            return Bad(BadReason.MALFORMED, problem)
        y = self._label(obj["y"])
        if y is None:
            return Bad(BadReason.LABEL_RANGE, f"y={obj['y']!r} not an int in [0, {self.num_classes})", obj["id"])
        return Label(obj["id"], y)

    def _label(self, v: object) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.num_classes:
            return None
        return v

    def _peek_id(self, payload: bytes) -> str | None:
        try:
            return self.message_id(payload)
        except struct.error:
            return None

    def _decode_json(self, payload: bytes) -> Sample | Bad:
        fast = self._decode_json_typed(payload)
        if fast is not None:
            return fast
        obj = _parse_json(payload)
        if isinstance(obj, Bad):
            return obj
        if not isinstance(obj, dict):
            return Bad(BadReason.MALFORMED, "sample must be a JSON object")
        mid = obj.get("id")
        problem = id_problem(mid)
        if problem is not None or not isinstance(mid, str):
            return Bad(BadReason.MALFORMED, problem or "'id' must be a string")
        xs = obj.get("x")
        if not isinstance(xs, list):
            return Bad(BadReason.MALFORMED, "'x' must be a list of numbers", mid)
        shape = _nested_shape(xs)
        if shape is not None:  # (6, 1) for 6 features was once taken silently by the learner: name the shape
            return Bad(BadReason.SHAPE, f"'x' is nested, shape {shape}; expected a flat list of {self.dim} numbers "
                                        "(one per feature, in the order the model reads them)", mid)
        if len(xs) != self.dim:
            return Bad(BadReason.SHAPE, f"'x' has {len(xs)} values, expected {self.dim}", mid)
        try:
            # json parses NaN/Infinity literals into floats; strings and nested lists fail here.
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs):
                raise TypeError
            x = np.asarray(xs, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            return Bad(BadReason.MALFORMED, "'x' must contain only numbers", mid)
        if not np.isfinite(x).all():
            return Bad(BadReason.NON_FINITE, "'x' contains NaN or Inf", mid)
        y: int | None = None
        if obj.get("y") is not None:
            y = self._label(obj["y"])
            if y is None:
                return Bad(BadReason.LABEL_RANGE, f"y={obj['y']!r} not an int in [0, {self.num_classes})", mid)
        ts = obj.get("ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts)):
            return Bad(BadReason.MALFORMED, f"ts={ts!r} must be a finite number", mid)
        return Sample(mid, x, y, None if ts is None else float(ts))

    def _decode_json_typed(self, payload: bytes) -> Sample | Bad | None:
        """A well-formed sample straight from bytes into typed fields (msgspec checks every value's type in C);
        None for anything else, which the general path then judges, so reasons never change (see _FAST_JSON)."""
        got = self.json_fields(payload)
        if got is None:
            return None
        mid, xs, y, ts = got
        x = np.asarray(xs, dtype=np.float32)
        if not np.isfinite(x).all():  # finite float64 beyond float32's range
            return None
        return Sample(mid, x, y, ts)

    def json_fields(self, payload: bytes) -> tuple[str, list[float], int | None, float | None] | None:
        """The typed path's checks of a JSON sample but its features' finiteness as float32: (id, features, label,
        ts), or None where the general path must judge. A caller that checks the features of many messages at once
        (edge_cl.daemon.intake) gets :meth:`decode_sample`'s result for every one that passes."""
        if _brackets_over(payload, MAX_JSON_DEPTH):
            return None
        try:
            got = _SAMPLE_DECODER.decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return None
        if id_problem(got.id) is not None or len(got.x) != self.dim:
            return None
        if got.y is not None and self._label(got.y) is None:
            return None
        return got.id, got.x, got.y, got.ts

    def _decode_binary(self, payload: bytes) -> Sample | Bad:
        got = self.binary_fields(payload)
        if isinstance(got, Bad):
            return got
        mid, y, off = got
        x = np.frombuffer(payload, dtype="<f4", count=self.dim, offset=off).astype(np.float32)
        if not np.isfinite(x).all():
            return Bad(BadReason.NON_FINITE, "features contain NaN or Inf", mid)
        return Sample(mid, x, y)

    def binary_fields(self, payload: bytes) -> tuple[str, int | None, int] | Bad:
        """Every check of a binary sample but its features' finiteness: (id, label, offset of the features), or why
        it is bad. The features are then ``4 * dim`` little-endian float32 bytes from that offset to the end."""
        if len(payload) < _HEAD.size:
            return Bad(BadReason.MALFORMED, "binary message shorter than its header")
        _, version, flags, n = _HEAD.unpack_from(payload)
        if version != VERSION:
            return Bad(BadReason.UNKNOWN_FORMAT, f"binary version {version}, expected {VERSION}")
        off = _HEAD.size + n
        if n == 0 or n > MAX_ID_LEN or len(payload) < off:
            return Bad(BadReason.MALFORMED, f"bad id length {n}")
        try:
            mid = payload[_HEAD.size:off].decode("utf-8")
        except UnicodeDecodeError:
            return Bad(BadReason.MALFORMED, "id is not UTF-8")
        problem = id_problem(mid)
        if problem is not None:
            return Bad(BadReason.MALFORMED, problem)
        y: int | None = None
        if flags & 1:
            if len(payload) < off + _LABEL.size:
                return Bad(BadReason.MALFORMED, "binary message truncated before its label", mid)
            (raw,) = _LABEL.unpack_from(payload, off)
            off += _LABEL.size
            y = self._label(raw)
            if y is None:
                return Bad(BadReason.LABEL_RANGE, f"y={raw} not in [0, {self.num_classes})", mid)
        body = len(payload) - off
        if body != 4 * self.dim:
            return Bad(BadReason.SHAPE, f"{body} feature bytes, expected {4 * self.dim} ({self.dim} float32)", mid)
        return mid, y, off


def _nested_shape(xs: list[object]) -> tuple[int, ...] | None:
    """The shape of ``xs`` when it is a regular nested list of numbers (``[[1], [2]]``: ``(2, 1)``), else None."""
    if not any(isinstance(v, list) for v in xs):
        return None
    try:
        arr = np.asarray(xs, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None  # ragged or not numbers: judged as malformed
    return tuple(int(n) for n in arr.shape) if arr.ndim > 1 else None


def _brackets_over(payload: bytes, limit: int) -> bool:
    """True when ``payload`` holds more than ``limit`` opening brackets and braces. A sample holds one of each:
    two memchr scans tell that case (~0.3 us for 6 KB) where counting both took ~4 us a message."""
    square, curly = payload.find(b"["), payload.find(b"{")
    if (square < 0 or payload.find(b"[", square + 1) < 0) and (curly < 0 or payload.find(b"{", curly + 1) < 0):
        return (square >= 0) + (curly >= 0) > limit
    return payload.count(b"[") + payload.count(b"{") > limit


def id_problem(mid: object) -> str | None:
    """Why ``mid`` cannot be a message id (None when it can): 1..MAX_ID_LEN bytes of valid UTF-8.

    Bytes, not characters, so that JSON and binary ids obey one limit. A lone surrogate (``"\\ud800"``
    in JSON, or the bytes ED A0 80, which json accepts) is refused here: SQLite cannot store it, and the
    spool insert would raise in the network thread.
    """
    if not isinstance(mid, str) or not mid:
        return f"'id' must be a non-empty string of at most {MAX_ID_LEN} bytes of UTF-8"
    try:
        size = len(mid.encode("utf-8"))
    except UnicodeEncodeError:
        return "'id' holds a lone surrogate (not valid UTF-8); send ids as plain UTF-8 text"
    if size > MAX_ID_LEN:
        return f"'id' is {size} bytes of UTF-8; at most {MAX_ID_LEN} are accepted"
    return None


def json_depth(payload: bytes) -> int:
    """Deepest nesting of arrays/objects in ``payload`` (brackets inside strings ignored); cheap for flat JSON."""
    if payload.count(b"[") + payload.count(b"{") <= 1:
        return 1
    bare = np.frombuffer(_JSON_STRING.sub(b"", payload), dtype=np.uint8)
    step = np.isin(bare, (0x5B, 0x7B)).astype(np.int32) - np.isin(bare, (0x5D, 0x7D)).astype(np.int32)
    return int(np.cumsum(step).max(initial=0))


# msgspec parses a 784-feature sample several times faster than json.loads (issue #27: decoding bounded the
# daemon at ~3,300 messages a second per core). It is stricter than json (no NaN / Infinity literals, no
# numbers beyond float range, UTF-8 only, no lone surrogates): whatever it refuses goes to json.loads, so every
# payload gets json's result -- the same samples and the same dead-letter reasons as before.
_FAST_JSON = msgspec.json.Decoder()


class _JsonSample(msgspec.Struct):
    """The shape of a well-formed JSON sample (other keys are ignored, as the general path ignores them)."""

    id: str
    x: list[float]
    y: int | None = None
    ts: float | None = None


_SAMPLE_DECODER = msgspec.json.Decoder(_JsonSample)


def _parse_json(payload: bytes) -> object:
    """The parsed JSON (msgspec, else ``json.loads``) bounded in depth, or a Bad naming what is wrong; never
    raises."""
    # Only as many levels as opening brackets: most payloads skip the scan.
    depth = 0 if not _brackets_over(payload, MAX_JSON_DEPTH) else json_depth(payload)
    if depth > MAX_JSON_DEPTH:
        return Bad(BadReason.MALFORMED, f"JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted")
    try:
        return _FAST_JSON.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return Bad(BadReason.MALFORMED, f"not JSON: {exc}"[:200])


def encode_binary(mid: str, x: np.ndarray, y: int | None = None) -> bytes:
    """Encode a sample in the binary layout (for publishers and tests)."""
    raw = mid.encode("utf-8")
    if not 0 < len(raw) <= MAX_ID_LEN:
        raise ValueError(f"id of {len(raw)} bytes; must be 1..{MAX_ID_LEN} bytes of UTF-8")
    head = _HEAD.pack(MAGIC, VERSION, 1 if y is not None else 0, len(raw)) + raw
    if y is not None:
        head += _LABEL.pack(int(y))
    return head + np.ascontiguousarray(x, dtype="<f4").tobytes()


def encode_json(mid: str, x: np.ndarray | list[float], y: int | None = None, ts: float | None = None) -> bytes:
    """Encode a sample as JSON (for publishers and tests)."""
    obj: dict[str, object] = {"id": mid, "x": [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]}
    if y is not None:
        obj["y"] = int(y)
    if ts is not None:
        obj["ts"] = float(ts)
    return json.dumps(obj).encode()
