"""Unit tests of the daemon's learning loop without a broker: spool rows in, outbox messages out."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_cl.config import parse_config
from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.mqtt_source import Outbox
from edge_cl.daemon.service import Daemon, id_digest, latest_checkpoint
from edge_cl.daemon.spool import LABEL, SAMPLE, Incoming, Spool

DIM, CLASSES = 6, 3


def config(tmp_path: Path, **spool: object):  # type: ignore[no-untyped-def]
    return parse_config({
        "input": {"dim": DIM, "num_classes": CLASSES},
        "model": {"type": "mlp", "input_dim": DIM, "hidden": [8], "num_classes": CLASSES},
        "learner": {"budget_bytes": 100_000, "replay_batch": 2, "device": "cpu", "max_batch": 4},
        "checkpoint": {"dir": str(tmp_path / "ckpt")},
        "spool": {"path": str(tmp_path / "spool.db"), **spool},
        "snapshot": {"enabled": False}, "metrics": {"enabled": False},
    })


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/daemon/conftest.py


def make(tmp_path: Path, **spool: object) -> tuple[Daemon, Spool]:
    d = Daemon(config(tmp_path, **spool))
    sp = Spool(d.cfg.spool.path)
    d._restore(sp)
    d.outbox = Outbox(10_000, d.metrics)
    return d, sp


def drain(d: Daemon) -> list[tuple[str, dict]]:
    out = []
    while (m := d.outbox.get_nowait()) is not None:
        out.append((m.topic, json.loads(m.payload)))
    return out


def sample(i: int, y: int | None) -> Incoming:
    x = np.full(DIM, float(i % CLASSES))
    return Incoming(SAMPLE, f"s{i}", y is not None, encode_json(f"s{i}", x, y))


def test_process_predicts_all_learns_labeled_and_dead_letters(tmp_path: Path) -> None:
    d, sp = make(tmp_path)
    sp.put_many([sample(0, 0), sample(1, None), Incoming(SAMPLE, None, False, b"junk"), sample(2, 2)])
    d._process(sp.read_after(0, 100))
    out = drain(d)
    preds = [m for t, m in out if t == d.cfg.topics.predictions]
    dead = [m for t, m in out if t == d.cfg.topics.dead_letter]
    assert [p["id"] for p in preds] == ["s0", "s1", "s2"]
    assert dead and dead[0]["reason"] == "malformed"
    assert d.progress.learned == 2 and d.progress.position == sp.last_seq()
    assert d.progress.digest == (id_digest("s0") + id_digest("s2")) % (1 << 64)
    assert len(d.join) == 1  # s1 waits for its label


def test_delayed_label_survives_a_checkpoint(tmp_path: Path) -> None:
    d, sp = make(tmp_path)
    sp.put_many([sample(i, None) for i in range(3)])
    d._process(sp.read_after(0, 100))
    d._checkpoint(sp)
    assert latest_checkpoint(d.cfg.checkpoint.dir) is not None
    # a fresh daemon (after a crash) rebuilds the waiting samples from the spool
    d2, sp2 = make(tmp_path)
    assert len(d2.join) == 3 and d2.progress.position == d.progress.position
    sp2.put_many([Incoming(LABEL, "s1", True, b'{"id": "s1", "y": 1}')])
    d2._process(sp2.read_after(d2.progress.position, 100))
    assert d2.progress.learned == 1 and len(d2.join) == 2


def test_catch_up_learns_a_subsample_but_predicts_everything(tmp_path: Path) -> None:
    d, sp = make(tmp_path, catchup_learn_fraction=0.25, lag_high_water=5)
    sp.put_many([sample(i, i % CLASSES) for i in range(200)])
    d._refresh_gauges(sp)
    assert d._catching_up
    pos = 0
    while rows := sp.read_after(pos, 50):
        d._process(rows)
        pos = d.progress.position
    preds = [m for t, m in drain(d) if t == d.cfg.topics.predictions]
    assert len(preds) == 200
    skipped = d.metrics.value("edge_cl_samples_not_learned_total", reason="catch_up")
    assert d.progress.learned + skipped == 200
    assert 20 <= d.progress.learned <= 80
    d._refresh_gauges(sp)
    assert not d._catching_up and d.metrics.value("edge_cl_spool_depth") == 0


def label(mid: str, y: int) -> Incoming:
    return Incoming(LABEL, mid, True, json.dumps({"id": mid, "y": y}).encode())


def test_a_storm_of_labels_is_not_a_lag_to_catch_up_on(tmp_path: Path) -> None:
    d, sp = make(tmp_path, lag_high_water=50)
    sp.put_many([label(f"u{i}", i % CLASSES) for i in range(500)] + [sample(i, i % CLASSES) for i in range(20)])
    d._refresh_gauges(sp)
    assert d.metrics.value("edge_cl_spool_depth") == 520 and not d._catching_up
    while rows := sp.read_after(d.progress.position, 50):
        d._process(rows)
    assert d.progress.learned == 20 and d.metrics.value("edge_cl_samples_not_learned_total", reason="catch_up") == 0
    assert [m["id"] for t, m in drain(d) if t == d.cfg.topics.predictions] == [f"s{i}" for i in range(20)]


def test_every_label_join_eviction_is_counted(tmp_path: Path) -> None:
    cfg = config(tmp_path).model_copy(update={"labels": config(tmp_path).labels.model_copy(
        update={"window_samples": 5, "window_s": 60.0, "early_labels": 10})})
    d = Daemon(cfg)
    sp = Spool(cfg.spool.path)
    d._restore(sp)
    d.outbox = Outbox(10_000, d.metrics)
    sp.put_many([label(f"u{i}", 0) for i in range(30)] + [sample(i, None) for i in range(8)])
    while rows := sp.read_after(d.progress.position, 7):
        d._process(rows)

    def evicted(reason: str) -> float:
        return d.metrics.value("edge_cl_label_join_evicted_total", reason=reason)

    assert evicted("early_labels") == 20 and evicted("window_samples") == 3 and evicted("window_s") == 0
    d._expire(time.monotonic() + 61.0)
    assert evicted("window_s") == 5 and len(d.join) == 0


def test_predictions_wait_for_room_while_connected_instead_of_being_dropped(tmp_path: Path) -> None:
    d, sp = make(tmp_path)
    d.outbox = Outbox(2, d.metrics)

    class Link:  # connected, with a network thread slower than the learner
        connected, fatal = True, None

    d._link = Link()  # type: ignore[assignment]
    got: list[str] = []

    def network() -> None:
        time.sleep(1.5)  # a long fsync of the intake, or a storm of messages to spool
        end = time.monotonic() + 10
        while len(got) < 12 and time.monotonic() < end:
            time.sleep(0.05)
            if (m := d.outbox.get_nowait()) is not None:
                got.append(json.loads(m.payload)["id"])

    t = threading.Thread(target=network, daemon=True)
    t.start()
    sp.put_many([sample(i, None) for i in range(12)])
    d._process(sp.read_after(0, 100))
    t.join(10)
    assert got == [f"s{i}" for i in range(12)] and d.metrics.value("edge_cl_outbound_dropped_total") == 0


def test_checkpoint_frees_spool_payloads_but_keeps_pending(tmp_path: Path) -> None:
    d, sp = make(tmp_path)
    sp.put_many([sample(0, 0), sample(1, None), sample(2, 1)])
    d._process(sp.read_after(0, 100))
    d._checkpoint(sp)
    # s1 (unlabeled, waiting) must stay readable for a restart; the learned rows before it may go
    assert [r.msg_id for r in sp.read_after(0, 100)] == ["s1", "s2"]
    assert sp.read_seqs(d.join.pending_seqs())


def test_old_checkpoints_are_pruned(tmp_path: Path) -> None:
    d, sp = make(tmp_path)
    for i in range(5):
        sp.put_many([sample(10 + i, 0)])
        d._process(sp.read_after(d.progress.position, 10))
        d._checkpoint(sp)
    assert len(list(d.cfg.checkpoint.dir.glob("ckpt-*.pt"))) == d.cfg.checkpoint.keep


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path: Path) -> None:
    d, sp = make(tmp_path)
    sp.put_many([sample(0, 0)])
    d._process(sp.read_after(0, 10))
    d._checkpoint(sp)
    other = config(tmp_path).model_copy(update={"model": {"type": "mlp", "input_dim": DIM, "hidden": [5],
                                                          "num_classes": CLASSES}})
    with pytest.raises(ValueError, match="does not fit the configured model"):
        Daemon(other)._restore(sp)


@pytest.mark.cuda
def test_learning_loop_and_resume_on_cuda(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg = cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"device": "cuda"})})
    d = Daemon(cfg)
    sp = Spool(cfg.spool.path)
    d._restore(sp)
    assert d.learner.device.type == "cuda"
    sp.put_many([sample(i, i % CLASSES) for i in range(20)] + [sample(99, None)])
    d._process(sp.read_after(0, 100))
    d._checkpoint(sp)
    from edge_cl.daemon.snapshots import make_job

    job = make_job(d.learner)
    assert next(job.model.parameters()).device.type == "cpu" and job.sample_inputs.device.type == "cpu"
    d2 = Daemon(cfg)
    d2._restore(Spool(cfg.spool.path))
    assert d2.learner.step == d.learner.step and len(d2.join) == 1


def test_a_spread_checkpoint_frees_the_spool_a_slice_at_a_time(tmp_path: Path) -> None:
    """issue #27: a periodic checkpoint leaves the freeing of its payloads to the loop, COMPACT_SLICE per turn,
    instead of holding the loop for all of them; the final checkpoint frees them at once."""
    from edge_cl.daemon.service import COMPACT_SLICE

    d, sp = make(tmp_path)
    n = 3 * COMPACT_SLICE
    sp.put_many([sample(i, i % CLASSES) for i in range(n)])
    while rows := sp.read_after(d.progress.position, 64):
        d._process(rows)
    d._checkpoint(sp, spread=True)
    live = sp.live_bytes()
    assert live > 0  # nothing freed by the checkpoint itself
    turns = 0
    while d._compact_some(sp):
        turns += 1
        assert sp.live_bytes() < live
        live = sp.live_bytes()
    assert turns == 3 and live == 0 and not d._compact_some(sp)
    sp.put_many([sample(n + i, 0) for i in range(10)])
    d._process(sp.read_after(d.progress.position, 64))
    before = d._compact_upto
    d._checkpoint(sp)  # not spread: what the kept checkpoints allow is freed at once
    assert d._compacted == d._compact_upto >= before and not d._compact_some(sp)


def test_settle_heap_puts_startup_objects_out_of_the_collectors_sight() -> None:
    import gc

    from edge_cl.daemon.service import settle_heap

    gc.unfreeze()
    settle_heap()
    try:
        assert gc.get_freeze_count() > 1000  # torch and the modules: not scanned by full collections any more
    finally:
        gc.unfreeze()
