"""Adaptive micro-batches (issue #27): the sizer's rule, and a daemon whose batches grow under a backlog learns the
same samples, each once and in the same order, as one with fixed batches; the test-then-train prediction taken
from the step's own forward equals a separate predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edge_cl.config import parse_config
from edge_cl.daemon.batching import BatchSizer, scaled_replay
from edge_cl.daemon.codec import Label, encode_binary
from edge_cl.daemon.intake import LABEL_MAGIC, label_record
from edge_cl.daemon.mqtt_source import Outbox
from edge_cl.daemon.service import Daemon
from edge_cl.daemon.spool import LABEL, SAMPLE, Incoming, Spool

DIM, CLASSES = 6, 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/daemon/conftest.py


def test_sizer_doubles_on_full_chunks_resets_when_drained_and_halves_over_target() -> None:
    s = BatchSizer(16, 256, 0.05)
    for want in (32, 64, 128, 256, 256):
        s.done(s.limit, 0.001)
        assert s.limit == want
    s.done(10, 0.001)  # the spool is drained
    assert s.limit == 16
    s.done(16, 0.001)
    s.done(32, 0.03)  # full, but twice its time would pass the target: stays
    assert s.limit == 32
    s.done(32, 0.2)  # over the target: halves, never below max_batch
    assert s.limit == 16
    s.done(16, 0.2)
    assert s.limit == 16
    with pytest.raises(ValueError, match="max_batch"):
        BatchSizer(32, 16, 0.05)


def test_replay_grows_with_the_batch_above_max_batch_only() -> None:
    assert scaled_replay(10, 16, 16) is None and scaled_replay(10, 16, 3) is None
    assert scaled_replay(10, 16, 256) == 160
    assert scaled_replay(0, 16, 256) is None


def config(tmp_path: Path, backlog: int, **learner: Any):  # type: ignore[no-untyped-def]
    return parse_config({
        "input": {"dim": DIM, "num_classes": CLASSES, "format": "binary"},
        "model": {"type": "mlp", "input_dim": DIM, "hidden": [8], "num_classes": CLASSES},
        "learner": {"budget_bytes": 100_000, "replay_batch": 2, "device": "cpu", "max_batch": 4, "seed": 1,
                    "backlog_max_batch": backlog, "latency_target_ms": 60_000.0, "standardize": False,
                    "importance": "mas", **learner},
        "labels": {"window_samples": 40},  # small: unlabelled samples are evicted to observe() mid-stream
        "checkpoint": {"dir": str(tmp_path / "ckpt")},
        "spool": {"path": str(tmp_path / "spool.db")},
        "snapshot": {"enabled": False}, "metrics": {"enabled": False},
    })


def stream(n: int) -> list[Incoming]:
    """Labelled and unlabelled samples, labels for some of the waiting ones (early and late) and duplicates."""
    rng = np.random.default_rng(0)
    out: list[Incoming] = []
    waiting: list[tuple[str, int]] = []
    for i in range(n):
        x = rng.normal(size=DIM).astype(np.float32)
        y = int(rng.integers(CLASSES))
        mid = f"s{i}"
        if i % 3 == 0:
            out.append(Incoming(SAMPLE, mid, False, encode_binary(mid, x, None)))
            waiting.append((mid, y))
        else:
            out.append(Incoming(SAMPLE, mid, True, encode_binary(mid, x, y)))
        if i % 7 == 0 and waiting:
            wid, wy = waiting.pop(0)
            out.append(Incoming(LABEL, wid, True, label_record(Label(wid, wy))))
        if i % 11 == 0:
            out.append(out[-1])  # redelivered: the spool ignores it
    assert label_record(Label("a", 1))[:2] == LABEL_MAGIC
    return out


class Recorder(Daemon):
    """The daemon, recording the ids of every step in order and the size of each step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.order: list[str] = []
        self.sizes: list[int] = []
        self.proba_calls = 0

    def _learn_steps(self, items: list[tuple[str, np.ndarray, int]], keep_logits: bool) -> list[Any]:
        self.order += [it[0] for it in items]
        self.sizes.append(len(items))
        return super()._learn_steps(items, keep_logits)


def run(tmp_path: Path, backlog: int, messages: list[Incoming], **learner: Any) -> Recorder:
    torch.manual_seed(0)  # the model's initial weights
    d = Recorder(config(tmp_path, backlog, **learner))
    sp = Spool(d.cfg.spool.path)
    d._restore(sp)
    d.outbox = Outbox(100_000, d.metrics)
    sp.put_many(messages)  # the whole stream is spooled before learning starts: a backlog
    while d.next_chunk(sp):
        pass
    sp.close()
    return d


def test_adaptive_batches_learn_the_same_samples_once_in_the_same_order(tmp_path: Path) -> None:
    messages = stream(400)
    fixed = run(tmp_path / "fixed", 4, messages, backlog_max_chunk=4)
    grown = run(tmp_path / "grown", 64, messages)
    assert max(fixed.sizes) <= 4 and max(grown.sizes) > 16  # the batches did grow
    assert len(grown.sizes) < len(fixed.sizes) / 3
    assert grown.order == fixed.order  # same samples, same order
    assert len(set(fixed.order)) == len(fixed.order)  # each once
    assert grown.progress.learned == fixed.progress.learned == len(fixed.order)
    assert grown.progress.digest == fixed.progress.digest
    assert grown.progress.position == fixed.progress.position
    assert grown.join.pending_seqs() == fixed.join.pending_seqs()
    assert grown.metrics.value("edge_cl_samples_observed_total") == fixed.metrics.value(
        "edge_cl_samples_observed_total") > 0
    preds = [json.loads(m.payload)["id"] for m in iter(grown.outbox.get_nowait, None)
             if m.topic == grown.cfg.topics.predictions]
    assert sorted(preds) == sorted({f"s{i}" for i in range(400)})  # each sample predicted once


def test_larger_chunks_learn_exactly_what_fixed_chunks_learn(tmp_path: Path) -> None:
    """backlog_max_chunk: chunks grow but are learned in steps of max_batch (backlog_max_batch unset), so the steps,
    the model and the predictions of labelled samples are those of chunks of max_batch."""
    messages = [m for m in stream(300) if m.kind == SAMPLE and m.labeled]
    fixed = run(tmp_path / "fixed", 4, messages, backlog_max_chunk=4)
    chunked = run(tmp_path / "chunked", 4, messages, backlog_max_chunk=64)
    assert max(fixed.sizes) == 4 and max(chunked.sizes) == 64  # one step a chunk / sixteen
    assert chunked.order == fixed.order and chunked.learner.step == fixed.learner.step
    for a, b in zip(fixed.learner.model.parameters(), chunked.learner.model.parameters()):
        assert torch.equal(a, b)
    assert chunked.learner.prequential_accuracy == fixed.learner.prequential_accuracy

    def preds(d: Daemon) -> list[tuple[str, int, int]]:
        return [(m["id"], m["pred"], m["model_step"]) for m in (json.loads(o.payload) for o in iter(
            d.outbox.get_nowait, None) if o.topic == d.cfg.topics.predictions)]
    got, want = preds(chunked), preds(fixed)
    full = len(messages) // 64 * 64  # the last chunk, not full, is predicted before its steps (published sooner)
    assert full >= 128 and [p[:2] for p in got[:full]] == [p[:2] for p in want[:full]]
    assert [p[0] for p in got] == [p[0] for p in want]


def test_single_forward_predictions_equal_a_separate_predict(tmp_path: Path) -> None:
    """Two daemons on the same stream: one predicts labelled samples from the step's own forward, the other (told
    the step logits differ) with a forward of their own. Same predictions, same learned weights, fewer forwards."""
    messages = stream(200)
    calls = {"one": 0, "two": 0}

    def counting(d: Daemon, key: str) -> None:
        inner = d.learner.predict_proba

        def spy(x: Any) -> np.ndarray:
            calls[key] += len(x)
            return inner(x)
        d.learner.predict_proba = spy  # type: ignore[method-assign]

    outs = {}
    daemons = {}
    for key in ("one", "two"):
        torch.manual_seed(0)
        d = Daemon(config(tmp_path / key, 64))
        sp = Spool(d.cfg.spool.path)
        d._restore(sp)
        d.outbox = Outbox(100_000, d.metrics)
        counting(d, key)
        if key == "two":
            d.learner.step_logits_differ = lambda: "told so"  # type: ignore[method-assign]
        sp.put_many(messages)
        while d.next_chunk(sp):
            pass
        sp.close()
        outs[key] = [json.loads(m.payload) for m in iter(d.outbox.get_nowait, None)
                     if m.topic == d.cfg.topics.predictions]
        daemons[key] = d
    assert daemons["one"].learner.step_logits_differ() is None  # the claim under test is made
    one, two = outs["one"], outs["two"]
    assert [m["id"] for m in one] == [m["id"] for m in two]  # same order
    assert [m["pred"] for m in one] == [m["pred"] for m in two]
    assert [m["model_step"] for m in one] == [m["model_step"] for m in two]
    np.testing.assert_allclose([m["proba"] for m in one], [m["proba"] for m in two], atol=2e-6)
    for a, b in zip(daemons["one"].learner.model.parameters(), daemons["two"].learner.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    labelled = sum(1 for m in messages if m.kind == SAMPLE and m.labeled)
    # Most labelled samples took no forward of their own (not in the first chunk, the last (partial) one, nor in
    # chunks where an unlabelled sample was evicted to observe()).
    assert calls["two"] == 200 and calls["two"] - calls["one"] >= labelled / 2
