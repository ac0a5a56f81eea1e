"""The intake boundary: one bounded decode of each raw message into the spool row that stands for it.

A valid sample is spooled as a compact record (id, label, float32 features in the binary layout), a label
as a label record, anything else as a dead-letter record that already holds the reason. The learner reads
records back without parsing the client's bytes a second time. Nothing a client can publish makes
:meth:`Intake.admit` raise: an unexpected exception becomes an ``internal`` dead letter (its traceback
logged once per exception type), so one message can never stop the network thread.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import struct
from dataclasses import dataclass

from edge_cl.daemon.codec import MAGIC, Bad, BadReason, Label, MessageCodec, Sample, encode_binary
from edge_cl.daemon.spool import BAD, LABEL, SAMPLE, Incoming, Row

log = logging.getLogger("edge_cl.daemon.intake")

LABEL_MAGIC = b"EL"
_LABEL_HEAD = struct.Struct("<2si")
DEAD_LETTER_PAYLOAD_BYTES = 1024  # how much of a rejected payload the dead letter carries (base64)


@dataclass(frozen=True)
class DeadLetter:
    """A rejected message: its reason and the dead-letter message body to publish."""

    reason: str
    detail: str
    body: bytes


def dead_letter(bad: Bad, payload: bytes, source: str) -> DeadLetter:
    """The dead letter for ``bad``: ``{"reason", "detail", "id", "source", "payload_b64"}`` (first 1 KiB)."""
    body = {"reason": bad.reason.value, "detail": bad.detail, "id": bad.id, "source": source,
            "payload_b64": base64.b64encode(payload[:DEAD_LETTER_PAYLOAD_BYTES]).decode()}
    return DeadLetter(bad.reason.value, bad.detail, json.dumps(body).encode())


def label_record(label: Label) -> bytes:
    """A validated label as stored in the spool."""
    return _LABEL_HEAD.pack(LABEL_MAGIC, label.y) + label.id.encode("utf-8")


class Intake:
    """Turns raw messages into spool rows (network thread) and spool rows back into values (learner)."""

    def __init__(self, codec: MessageCodec) -> None:
        self.codec = codec
        # Records use the binary layout whatever the input format; their size is bounded by dim, not by the
        # client's max_payload_bytes.
        self._records = dataclasses.replace(codec, format="binary", max_payload_bytes=1 << 30)
        self._logged: set[str] = set()

    def admit(self, payload: bytes, is_label: bool) -> Incoming:
        """The spool row for one raw message: a record keyed by its id, or a dead letter (no id: no dedupe)."""
        source = "labels" if is_label else "samples"
        try:
            got = self.codec.decode_label(payload) if is_label else self.codec.decode_sample(payload)
            if isinstance(got, Sample):
                return Incoming(SAMPLE, got.id, got.y is not None, encode_binary(got.id, got.x, got.y))
            if isinstance(got, Label):
                return Incoming(LABEL, got.id, True, label_record(got))
            return Incoming(BAD, None, False, dead_letter(got, payload, source).body)
        except Exception as exc:  # noqa: BLE001 - the last line of defence of the network thread
            return self.internal(exc, payload, source)

    def internal(self, exc: BaseException, payload: bytes, source: str) -> Incoming:
        """A dead-letter row for a message whose handling raised ``exc`` (logged with traceback once per type)."""
        kind = type(exc).__name__
        if kind not in self._logged:
            self._logged.add(kind)
            log.error("internal error handling a message on %s (dead-lettered as 'internal'; later %s errors "
                      "are counted in edge_cl_bad_inputs_total{reason=\"internal\"} only)", source, kind,
                      exc_info=exc)
        bad = Bad(BadReason.INTERNAL, f"{kind}: {exc}"[:200])
        return Incoming(BAD, None, False, dead_letter(bad, payload, source).body)

    def read(self, row: Row) -> Sample | Label | DeadLetter:
        """What a spooled row stands for. Rows spooled by older versions hold raw payloads: decoded in full."""
        if row.kind == BAD:
            return _read_dead_letter(row.payload)
        if row.kind == LABEL:
            if row.payload[:2] == LABEL_MAGIC and len(row.payload) > _LABEL_HEAD.size:
                _, y = _LABEL_HEAD.unpack_from(row.payload)
                return Label(row.payload[_LABEL_HEAD.size:].decode("utf-8"), y)
            got: Sample | Label | Bad = self.codec.decode_label(row.payload)
        elif row.payload[:2] == MAGIC:
            got = self._records.decode_sample(row.payload)
        else:
            got = self.codec.decode_sample(row.payload)
        if isinstance(got, Bad):
            return dead_letter(got, row.payload, "labels" if row.kind == LABEL else "samples")
        return got


def _read_dead_letter(body: bytes) -> DeadLetter:
    try:
        obj = json.loads(body)
        return DeadLetter(str(obj["reason"]), str(obj["detail"]), body)
    except (ValueError, KeyError, TypeError):  # not written by Intake: keep it visible rather than lose it
        return dead_letter(Bad(BadReason.INTERNAL, "unreadable dead-letter row in the spool"), body, "spool")
