"""Integration tests of the daemon against a real Mosquitto broker (issue #3, "Must show" 1, 2, 4, 6)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl.config import load_config
from edge_cl.daemon.codec import BadReason, encode_binary, encode_json
from edge_cl.daemon.service import Daemon, id_digest, latest_checkpoint
from edge_cl.state_file import safe_load
from tests.broker import Collector, Mosquitto, daemon_toml, publish_all, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.broker]
DIM, CLASSES = 8, 3


def samples(n: int, prefix: str = "s", seed: int = 0, labeled: bool = True) -> list[tuple[str, np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    protos = np.eye(CLASSES, DIM) * 3
    out = []
    for i in range(n):
        y = int(rng.integers(CLASSES))
        out.append((f"{prefix}{i}", (protos[y] + rng.normal(size=DIM)).astype(np.float32), y))
    return out


def digest(ids: list[str]) -> str:
    return str(sum(id_digest(i) for i in ids) % (1 << 64))


def final_extra(workdir: Path) -> dict:
    path = latest_checkpoint(workdir / "ckpt")
    assert path is not None, "no checkpoint written"
    return dict(safe_load(path)["extra"])


@contextlib.contextmanager
def running(cfg_path: Path, hold_limit: int | None = None, clean_exit: bool = False) -> Iterator[Daemon]:
    """The daemon in a thread of this process (single torch thread, as `edge-cl run` sets it); ``hold_limit``:
    messages it holds in memory while the spool refuses writes; ``clean_exit``: its run must return 0."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    daemon = Daemon(load_config(cfg_path))
    if hold_limit is not None:
        daemon.hold_limit = hold_limit
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(daemon.run(stop)), daemon=True)
    t.start()
    try:
        assert daemon.ready.wait(30), "daemon did not start"
        yield daemon
    finally:
        stop.set()
        t.join(30)
        torch.set_num_threads(threads)
    assert not t.is_alive(), "daemon did not stop"
    assert not clean_exit or result == [0], daemon.exit_reason
    assert result == [0], daemon.exit_reason


def wait_until(cond, timeout: float, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def test_end_to_end_with_delayed_labels(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port)
    col = Collector(broker.port, ["t/predictions", "t/dead"])
    labeled = samples(300, "a")
    delayed = samples(100, "b", seed=1)
    never = samples(50, "c", seed=2)
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in labeled])
        publish_all(broker.port, "t/samples", [encode_json(i, x) for i, x, _ in delayed + never])
        publish_all(broker.port, "t/labels", [json.dumps({"id": i, "y": y}).encode() for i, _, y in delayed])
        n = len(labeled) + len(delayed) + len(never)
        assert col.wait_for("t/predictions", n, 30)
        assert wait_until(lambda: d.progress.learned >= len(labeled) + len(delayed), 15)
        time.sleep(0.3)
    learned_ids = [i for i, _, _ in labeled + delayed]
    extra = final_extra(tmp_path / "d")
    assert extra["learned"] == len(learned_ids)
    assert extra["learned_digest"] == digest(learned_ids)
    assert sorted(extra["pending"]) and len(extra["pending"]) == len(never)  # still waiting for labels
    preds = col.json("t/predictions")
    assert len(preds) == n and sorted(p["id"] for p in preds) == sorted(i for i, _, _ in labeled + delayed + never)
    assert set(preds[0]) == {"id", "pred", "proba", "model_step", "latency_ms"}
    assert abs(sum(preds[-1]["proba"]) - 1) < 1e-3
    assert col.count("t/dead") == 0
    assert d.metrics.value("edge_cl_samples_learned_total") == len(learned_ids)
    assert d.metrics.value("edge_cl_predictions_published_total") == n
    assert d.learner.prequential_accuracy > 1 / CLASSES  # easy prototypes: well above chance
    col.close()


def test_redelivered_duplicates_are_learned_once(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port)
    data = samples(50)
    with running(cfg) as d:
        payloads = [encode_json(i, x, y) for i, x, y in data]
        publish_all(broker.port, "t/samples", payloads + payloads[:20])  # 20 duplicates by id
        assert wait_until(lambda: d.metrics.value("edge_cl_duplicates_total") == 20, 15)
        assert wait_until(lambda: d.progress.learned == 50, 10)
    assert final_extra(tmp_path / "d")["learned_digest"] == digest([i for i, _, _ in data])


def test_broker_restart_mid_stream(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port, extra="")
    # A slow learner (fixed steps of one sample), so the broker still queues messages when it restarts.
    text = cfg.read_text().replace("max_batch = 8", "max_batch = 1\nbacklog_max_batch = 1")
    cfg.write_text(text)
    data = samples(1500)
    payloads = [encode_json(i, x, y) for i, x, y in data]
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", payloads[:1000])
        assert wait_until(lambda: d.progress.learned > 0, 10)
        broker.stop(signal.SIGTERM)  # clean stop: Mosquitto saves the session and its queue
        learned_at_stop = d.progress.learned
        broker.start()
        # The rest after the restart, while the daemon may still be reconnecting (the broker queues them for its
        # persistent session): the stream goes on across the restart however fast the daemon took the first part.
        publish_all(broker.port, "t/samples", payloads[1000:])
        assert wait_until(lambda: d.progress.learned >= len(data), 40), d.progress.learned
        time.sleep(0.5)
        assert d.progress.learned == len(data)
        assert d.metrics.value("edge_cl_broker_reconnects_total") >= 1
    assert learned_at_stop < len(data), "the broker restart did not happen mid-stream"
    extra = final_extra(tmp_path / "d")
    assert extra["learned"] == len(data)
    assert extra["learned_digest"] == digest([i for i, _, _ in data])


def test_bad_inputs_are_counted_and_dead_lettered(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port)
    col = Collector(broker.port, ["t/dead", "t/predictions"])
    good = samples(60)
    bad = {
        BadReason.MALFORMED: [b"{not json", b'{"x": [1,2]}', b"\xff\xfe"],
        BadReason.SHAPE: [encode_json("w1", np.zeros(DIM + 1)), encode_json("w2", np.zeros(2))],
        BadReason.NON_FINITE: [b'{"id": "n1", "x": [NaN, 0, 0, 0, 0, 0, 0, 0], "y": 1}',
                               b'{"id": "n2", "x": [Infinity, 0, 0, 0, 0, 0, 0, 0], "y": 1}'],
        BadReason.LABEL_RANGE: [encode_json("l1", np.zeros(DIM), 7), b'{"id": "l2", "x": [0,0,0,0,0,0,0,0], "y": -1}'],
        BadReason.TOO_LARGE: [json.dumps({"id": "big", "x": [0.0] * 2000, "y": 0}).encode()],
        BadReason.UNKNOWN_FORMAT: [encode_binary("bin", np.zeros(DIM), 1)],
    }
    stream = [encode_json(i, x, y) for i, x, y in good]
    for payloads in bad.values():
        for k, p in enumerate(payloads):
            stream.insert(7 * (k + 1) + len(stream) // 3, p)
    n_bad = sum(len(v) for v in bad.values())
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", stream)
        publish_all(broker.port, "t/labels", [b"not json", b'{"id": "s1", "y": 99}'])
        assert col.wait_for("t/dead", n_bad + 2, 20)
        assert wait_until(lambda: d.progress.learned == len(good), 10)
        for reason, payloads in bad.items():
            got = d.metrics.value("edge_cl_bad_inputs_total", reason=reason.value)
            # the two bad label messages: one malformed, one out of range
            want = len(payloads) + (1 if reason in (BadReason.MALFORMED, BadReason.LABEL_RANGE) else 0)
            assert got == want, (reason, got, want)
        assert all(torch.isfinite(p).all() for p in d.learner.model.parameters())
        # still running and learning after all that
        after = samples(10, "z", seed=5)
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in after])
        assert wait_until(lambda: d.progress.learned == len(good) + len(after), 10)
    dead = col.json("t/dead")
    assert {m["reason"] for m in dead} == {r.value for r in bad}
    assert all(m["detail"] for m in dead)
    assert col.wait_for("t/predictions", len(good) + 10, 5) and col.count("t/predictions") == len(good) + 10
    col.close()


def test_sigterm_exits_zero_with_checkpoint(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port, checkpoint_every_steps=100000)
    cfg.write_text(cfg.read_text().replace("every_s = 2.0", "every_s = 3600"))
    col = Collector(broker.port, ["t/status", "t/predictions"])
    proc = subprocess.Popen([sys.executable, "-m", "edge_cl.cli.main", "run", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_status(col, "t/status", b"online", 40)
        data = samples(100)
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in data])
        assert col.wait_for("t/predictions", 100, 20)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read().decode() if proc.stdout else ""
    extra = final_extra(tmp_path / "d")
    assert extra["learned"] == 100, out
    assert wait_status(col, "t/status", b"offline", 5)
    col.close()


def test_restart_resumes_from_checkpoint(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port)
    first, second = samples(40, "p"), samples(40, "q", seed=3)
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in first])
        assert wait_until(lambda: d.progress.learned == 40, 15)
        step = d.learner.step
    with running(cfg) as d2:
        assert d2.learner.step == step and d2.progress.learned == 40
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in second])
        assert wait_until(lambda: d2.progress.learned == 80, 15)
    assert final_extra(tmp_path / "d")["learned_digest"] == digest([i for i, _, _ in first + second])


def test_metrics_endpoint_serves_the_required_names(broker: Mosquitto, tmp_path: Path) -> None:
    import urllib.request

    cfg = daemon_toml(tmp_path / "d", broker.port)
    cfg.write_text(cfg.read_text().replace("[metrics]\nenabled = false", "[metrics]\nenabled = true\nport = 0"))
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in samples(30)])
        assert wait_until(lambda: d.progress.learned == 30, 10)
        time.sleep(0.6)  # gauges refresh twice a second
        text = urllib.request.urlopen(f"http://127.0.0.1:{d.metrics_port}/metrics", timeout=5).read().decode()
    for name in ("edge_cl_messages_received_total", "edge_cl_samples_learned_total",
                 "edge_cl_predictions_published_total", 'edge_cl_bad_inputs_total{reason="non_finite"}',
                 "edge_cl_update_latency_seconds_bucket", "edge_cl_spool_depth", "edge_cl_buffer_fill_ratio",
                 "edge_cl_budget_used_bytes", "edge_cl_consolidations_total", "edge_cl_prequential_accuracy"):
        assert name in text, name
    assert "edge_cl_samples_learned_total 30.0" in text
    # What clients see (issue #26): every published prediction's receipt -> prediction time, beside the learn step's.
    assert "edge_cl_prediction_latency_seconds_count 30.0" in text


def test_onnx_snapshots_off_the_hot_path_and_at_shutdown(broker: Mosquitto, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    cfg = daemon_toml(tmp_path / "d", broker.port)
    cfg.write_text(cfg.read_text().replace(
        # Every 2 steps: a burst of 60 may take only a few steps once the batches grow under the backlog.
        "[snapshot]\nenabled = false", '[snapshot]\nenabled = true\ndir = "snaps"\nevery_steps = 2\nevery_s = 3600'))
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in samples(60)])
        assert wait_until(lambda: d.progress.learned == 60, 10)
        assert wait_until(lambda: d.metrics.value("edge_cl_snapshots_total", outcome="published") >= 1, 15)
        step = d.learner.step
    manifest = json.loads((tmp_path / "d" / "snaps" / "manifest.json").read_text())
    assert d.metrics.value("edge_cl_snapshots_total", outcome="failed") == 0
    # the snapshot taken at shutdown holds the final model step
    assert d.metrics.value("edge_cl_snapshot_version") == step
    assert manifest["step"] == step
