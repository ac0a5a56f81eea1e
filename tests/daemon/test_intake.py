"""The intake boundary (issue #12): the chaos run's probes as regression tests, and a property-based fuzz of
decoder + spool + learning loop in-process (no broker) asserting every message is accounted for."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_cl.config import load_config
from edge_cl.daemon.codec import BadReason, MessageCodec, Sample, encode_binary, encode_json
from edge_cl.daemon.intake import DeadLetter, Intake
from edge_cl.daemon.mqtt_source import Outbox
from edge_cl.daemon.service import Daemon
from edge_cl.daemon.spool import BAD, LABEL, SAMPLE, Incoming, Spool
from tests.broker import daemon_toml
from tests.daemon.fuzz_payloads import LABEL as LABEL_TOPIC
from tests.daemon.fuzz_payloads import kinds
from tests.daemon.test_codec_probes import DEEP, SURROGATE_BYTES, SURROGATE_ESCAPED, ZERO_ID

DIM, CLASSES, MAX_BYTES = 8, 3, 4096
J = MessageCodec("json", 24, 3)
B = MessageCodec("binary", 24, 3)


# ---- the probes through Intake + Spool: a row for each, nothing raised, zero ids not merged ---------------
def test_probes_become_dead_letter_rows_and_spool(tmp_path: Path) -> None:
    intake, sp = Intake(J), Spool(tmp_path / "s.db")
    rows = [intake.admit(DEEP, False), intake.admit(SURROGATE_ESCAPED, True), intake.admit(SURROGATE_BYTES, True)]
    assert [r.kind for r in rows] == [BAD] * 3
    assert None not in sp.put_many(rows)
    bi = Intake(B)
    zero = [bi.admit(ZERO_ID, False), bi.admit(ZERO_ID, False)]
    assert None not in sp.put_many(zero)  # two dead letters, not one row and a "duplicate"
    for row in sp.read_after(0, 10):
        got = intake.read(row)
        assert isinstance(got, DeadLetter) and got.reason == "malformed"


def test_spool_salvages_a_row_the_database_refuses(tmp_path: Path) -> None:
    sp, intake = Spool(tmp_path / "s.db"), Intake(J)
    good = intake.admit(encode_json("ok", [0.0] * 24, 1), False)
    poison = Incoming(LABEL, "bad-\ud800", True, b"x")  # an id that slipped past validation
    seqs = sp.put_salvaging([good, poison], lambda it, exc: intake.internal(exc, it.payload, "labels"))
    assert None not in seqs
    rows = sp.read_after(0, 10)
    assert [r.kind for r in rows] == [SAMPLE, BAD]
    dead = intake.read(rows[1])
    assert isinstance(dead, DeadLetter) and dead.reason == "internal"


def test_admit_turns_an_exception_into_an_internal_dead_letter(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(MessageCodec):
        def decode_sample(self, payload: bytes):  # type: ignore[no-untyped-def]
            raise KeyError("boom")

    intake = Intake(Exploding("json", 4, 3))
    rows = [intake.admit(b"{}", False) for _ in range(3)]
    assert all(r.kind == BAD and json.loads(r.payload)["reason"] == "internal" for r in rows)
    assert sum("Traceback" in r.exc_text for r in caplog.records if r.exc_text) == 1  # once per kind


def test_records_are_read_back_without_the_client_format(tmp_path: Path) -> None:
    intake, sp = Intake(J), Spool(tmp_path / "s.db")
    x = np.arange(24, dtype=np.float32)
    sp.put_many([intake.admit(encode_json("a", x, 2), False), intake.admit(b'{"id": "a", "y": 1}', True)])
    s, lab = (intake.read(r) for r in sp.read_after(0, 10))
    assert s.id == "a" and s.y == 2 and np.array_equal(s.x, x)  # type: ignore[union-attr]
    assert lab.id == "a" and lab.y == 1  # type: ignore[union-attr]


# ---- property-based fuzz: decoder + spool + learning loop -----------------------------------------------------
def _daemon(tmp_path: Path, fmt: str) -> tuple[Daemon, Spool]:
    cfg = load_config(daemon_toml(tmp_path, 1883, dim=DIM, num_classes=CLASSES, fmt=fmt))
    d = Daemon(cfg)
    sp = Spool(cfg.spool.path)
    d._restore(sp)
    d.outbox = Outbox(1_000_000, d.metrics)
    return d, sp


FIGURES: Counter[str] = Counter()


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_fuzz_every_message_is_accounted_for_and_the_next_sample_predicted(tmp_path: Path, fmt: str) -> None:
    torch.set_num_threads(1)
    d, sp = _daemon(tmp_path, fmt)
    intake = Intake(d.codec)
    fresh = iter(range(10**9))
    examples = int(os.environ.get("EDGE_CL_FUZZ_EXAMPLES", "140"))  # x ~10 payloads, per format

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(kinds(DIM, CLASSES, MAX_BYTES), min_size=5, max_size=20))
    def one_batch(batch: list[tuple[str, str, bytes]]) -> None:
        items = [intake.admit(p, topic == LABEL_TOPIC) for _, topic, p in batch]  # raises nothing
        seqs = sp.put_salvaging(items, lambda it, exc: intake.internal(exc, it.payload, "x"))
        spooled = [it for it, s in zip(items, seqs) if s is not None]
        probe = f"probe-{next(fresh)}"
        x = np.full(DIM, 0.25, np.float32)
        sp.put_many([intake.admit(encode_json(probe, x, 1) if fmt == "json" else encode_binary(probe, x, 1), False)])
        bad_before = {r.value: d.metrics.value("edge_cl_bad_inputs_total", reason=r.value) for r in BadReason}
        d._process(sp.read_after(d.progress.position, 10_000))
        out = []
        while (m := d.outbox.get_nowait()) is not None:
            out.append(m)
        preds = [json.loads(m.payload)["id"] for m in out if m.topic == d.cfg.topics.predictions]
        dead = Counter(json.loads(m.payload)["reason"] for m in out if m.topic == d.cfg.topics.dead_letter)
        # every spooled sample predicted, every rejected one dead-lettered under its reason, dups counted
        assert len(preds) == sum(it.kind == SAMPLE for it in spooled) + 1 and preds[-1] == probe
        assert sum(dead.values()) == sum(it.kind == BAD for it in spooled)
        for reason, n in dead.items():
            assert d.metrics.value("edge_cl_bad_inputs_total", reason=reason) - bad_before[reason] == n
        assert len(items) == len(spooled) + seqs.count(None)
        # Any finite features, however huge, leave the learner finite (steps that would overflow are skipped).
        assert all(torch.isfinite(p).all() for p in d.learner.model.parameters())
        FIGURES[f"{fmt}:payloads"] += len(batch)
        for (kind, _, _), it, s in zip(batch, items, seqs):
            FIGURES[f"{fmt}:kind:{kind}"] += 1
            outcome = "duplicate" if s is None else {SAMPLE: "predicted", LABEL: "label"}.get(
                it.kind, f"dead:{json.loads(it.payload)['reason'] if it.kind == BAD else '?'}")
            FIGURES[f"{fmt}:outcome:{outcome}"] += 1

    one_batch()
    assert FIGURES[f"{fmt}:payloads"] > 0
    report = os.environ.get("EDGE_CL_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(sorted(FIGURES.items())), indent=1))


# ---- batched intake (issue #27): the same rows and values as one message at a time ------------------------------
def _value(got: object) -> object:
    if isinstance(got, Sample):
        return ("sample", got.id, got.x.dtype, got.x.tobytes(), got.y, got.ts, got.x.flags.writeable)
    return got


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_admit_many_gives_what_admit_gives(tmp_path: Path, fmt: str) -> None:
    intake = Intake(MessageCodec(fmt, DIM, CLASSES, max_payload_bytes=MAX_BYTES))
    sp = Spool(tmp_path / "s.db")

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(kinds(DIM, CLASSES, MAX_BYTES), min_size=1, max_size=30))
    def batch(messages: list[tuple[str, str, bytes]]) -> None:
        pairs = [(p, topic == LABEL_TOPIC) for _, topic, p in messages]
        many = intake.admit_many(pairs)
        assert many == [intake.admit(p, is_label) for p, is_label in pairs]
        # and read back: read_many gives what read gives, row by row
        seqs = sp.put_salvaging(many, lambda it, exc: intake.internal(exc, it.payload, "x"))
        rows = sp.read_seqs(s for s in seqs if s is not None)
        assert [_value(v) for v in intake.read_many(rows)] == [_value(intake.read(r)) for r in rows]

    batch()


def test_binary_flag_bits_beyond_the_label_are_not_kept_in_the_record() -> None:
    intake = Intake(MessageCodec("binary", DIM, CLASSES))
    x = np.linspace(-1, 1, DIM).astype(np.float32)
    odd = bytearray(encode_binary("f", x, 2))
    odd[3] |= 0x06
    canonical = encode_binary("f", x, 2)
    assert intake.admit_many([(bytes(odd), False), (canonical, False)]) == [intake.admit(bytes(odd), False)] * 2
    assert intake.admit_many([(canonical, False)])[0].payload is canonical  # the payload itself, no copy


def test_read_many_shares_the_chunk_only_for_labelled_samples(tmp_path: Path) -> None:
    intake, sp = Intake(B), Spool(tmp_path / "s.db")
    x = np.arange(24, dtype=np.float32)
    sp.put_many([intake.admit(encode_binary("a", x, 1), False), intake.admit(encode_binary("b", x), False)])
    a, b = intake.read_many(sp.read_after(0, 10))
    assert isinstance(a, Sample) and isinstance(b, Sample)
    assert a.x.base is not None and b.x.base is None  # b may wait in the label join: it holds only its own row


def test_admit_many_casts_json_features_to_float32_as_admit_does() -> None:
    """Values at float32's edges (out of range, rounding, subnormal, integers) give the same rows either way."""
    intake = Intake(MessageCodec("json", 8, CLASSES))
    edges = [[1e39, 1, 2, 3, 4, 5, 6, 7], [-1e39] * 8, [3.4028235e38, 3.4028236e38, 1e-46, -1e-46, 1.4e-45, 0.1,
                                                      16777217, -0.0], [2.5] * 8]
    pairs = [(json.dumps({"id": f"e{i}", "x": x, "y": 1}).encode(), False) for i, x in enumerate(edges)]
    with np.errstate(over="ignore"):
        assert intake.admit_many(pairs) == [intake.admit(p, lab) for p, lab in pairs]
