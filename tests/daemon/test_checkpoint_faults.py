"""A checkpoint directory that refuses writes (full, read-only): the daemon keeps predicting, retries with
backoff, logs the cause once with the path, resumes by itself; its exit code and its log agree."""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl.config import parse_config
from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.held import HeldMessages
from edge_cl.daemon.mqtt_source import Outbox
from edge_cl.daemon.retry import WriteRetry
from edge_cl.daemon.service import Daemon
from edge_cl.daemon.spool import SAMPLE, Incoming, Spool
from tests.daemon.faults import read_only, small_tmpfs

DIM, CLASSES = 6, 3


def make(ckpt_dir: Path, tmp_path: Path, **broker: object) -> tuple[Daemon, Spool]:
    cfg = parse_config({
        "input": {"dim": DIM, "num_classes": CLASSES},
        "model": {"type": "mlp", "input_dim": DIM, "hidden": [8], "num_classes": CLASSES},
        "learner": {"budget_bytes": 100_000, "replay_batch": 2, "device": "cpu", "max_batch": 4},
        "checkpoint": {"dir": str(ckpt_dir), "every_s": 0.05},
        "spool": {"path": str(tmp_path / "spool.db")},
        "snapshot": {"enabled": False}, "metrics": {"enabled": False},
        "broker": {"port": 1, "connect_timeout_s": 0.2, **broker},
    })
    d = Daemon(cfg)
    sp = Spool(cfg.spool.path)
    d._restore(sp)
    d.outbox = Outbox(100_000, d.metrics)
    d.checkpoint_retry = WriteRetry("checkpoint", min_s=0.05, max_s=0.2)
    return d, sp


class _Link:  # what the learning loop reads of the MQTT link
    fatal = None
    connected = False

    def __init__(self) -> None:
        self.spooled = threading.Condition()
        self.held = HeldMessages()


@contextmanager
def looping(d: Daemon, sp: Spool) -> Iterator[None]:
    stop = threading.Event()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            d._loop(stop, Spool(sp.path), _Link(), None)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(20)
        torch.set_num_threads(threads)
    assert not errors, errors  # the loop itself never stopped


def feed(sp: Spool, start: int, n: int) -> None:
    sp.put_many([Incoming(SAMPLE, f"s{i}", True, encode_json(f"s{i}", np.full(DIM, float(i % CLASSES)), i % CLASSES))
                 for i in range(start, start + n)])


def wait_until(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def predictions(d: Daemon) -> int:
    return int(d.metrics.value("edge_cl_predictions_published_total"))


def test_disk_full_checkpoint_degrades_then_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d, sp = make(tmp_path / "ckpt", tmp_path)
    real_save = d.save_state
    full = threading.Event()
    full.set()

    def save(state, path, mode):  # type: ignore[no-untyped-def]
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(state, path, mode)

    d.save_state = save
    with caplog.at_level(logging.INFO, logger="edge_cl.daemon"), looping(d, sp):
        feed(sp, 0, 40)
        assert wait_until(lambda: predictions(d) >= 40)
        assert wait_until(lambda: d.metrics.value("edge_cl_checkpoint_failures_total") >= 3)
        feed(sp, 40, 40)  # still predicting and learning while checkpoints fail
        assert wait_until(lambda: predictions(d) >= 80 and d.progress.learned >= 80)
        assert not list((tmp_path / "ckpt").glob("ckpt-*.pt"))
        full.clear()  # space is back
        assert wait_until(lambda: bool(list((tmp_path / "ckpt").glob("ckpt-*.pt"))))
    causes = [r for r in caplog.records if "No space left on device" in r.getMessage()]
    assert len(causes) == 1 and str(tmp_path / "ckpt") in causes[0].getMessage()
    assert causes[0].levelno == logging.ERROR and not causes[0].exc_info  # a cause, not a traceback
    assert any("written again" in r.getMessage() for r in caplog.records)
    assert not d.checkpoint_retry.failing


def test_learning_and_predicting_go_on_while_a_checkpoint_write_is_stuck(tmp_path: Path) -> None:
    """The learning loop only copies the state; the write (here stuck until released) runs on the writer thread."""
    d, sp = make(tmp_path / "ckpt", tmp_path)
    real_save = d.save_state
    entered, release = threading.Event(), threading.Event()
    writers: list[str] = []

    def stuck(state, path, mode):  # type: ignore[no-untyped-def]
        writers.append(threading.current_thread().name)
        entered.set()
        assert release.wait(30)
        real_save(state, path, mode)

    d.save_state = stuck
    with looping(d, sp):
        feed(sp, 0, 40)
        assert wait_until(entered.is_set)  # a checkpoint is being written, and stays stuck
        learned, predicted = d.progress.learned, predictions(d)
        feed(sp, 40, 40)
        assert wait_until(lambda: predictions(d) >= predicted + 40 and d.progress.learned >= learned + 40)
        assert not list((tmp_path / "ckpt").glob("ckpt-*.pt")) and len(writers) == 1  # one write at a time
        release.set()
        assert wait_until(lambda: bool(list((tmp_path / "ckpt").glob("ckpt-*.pt"))))
    assert writers and all(name == "edge-cl-checkpoint" for name in writers)
    assert d.metrics.value("edge_cl_checkpoint_failures_total") == 0


def test_a_really_full_checkpoint_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_tmpfs(tmp_path / "small", "1m") as where:
        (where / "ckpt").mkdir()
        filler = where / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last block
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        d, sp = make(where / "ckpt", tmp_path)
        with caplog.at_level(logging.INFO, logger="edge_cl.daemon"), looping(d, sp):
            feed(sp, 0, 40)
            assert wait_until(lambda: d.metrics.value("edge_cl_checkpoint_failures_total") >= 2)
            assert wait_until(lambda: predictions(d) >= 40)
            filler.unlink()  # the operator frees space; no restart
            assert wait_until(lambda: bool(list((where / "ckpt").glob("ckpt-*.pt"))))
        causes = [r.getMessage() for r in caplog.records if "No space left" in r.getMessage()]
        assert len(causes) == 1 and str(where / "ckpt") in causes[0], causes


def test_a_read_only_checkpoint_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    d, sp = make(ckpt, tmp_path)
    with caplog.at_level(logging.INFO, logger="edge_cl.daemon"), looping(d, sp):
        with read_only(ckpt):
            feed(sp, 0, 40)
            assert wait_until(lambda: d.metrics.value("edge_cl_checkpoint_failures_total") >= 2)
            assert wait_until(lambda: predictions(d) >= 40 and d.progress.learned >= 40)
            assert not list(ckpt.glob("ckpt-*.pt"))
        # the operator remounts it read-write; no restart
        assert wait_until(lambda: bool(list(ckpt.glob("ckpt-*.pt"))))
    causes = [r.getMessage() for r in caplog.records if "Read-only file system" in r.getMessage()
              or "Permission denied" in r.getMessage()]
    assert len(causes) == 1 and str(ckpt) in causes[0], causes
    assert any("written again" in r.getMessage() for r in caplog.records)


def test_exit_code_and_log_agree_on_an_internal_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d, sp = make(tmp_path / "ckpt", tmp_path)
    sp.close()

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    d._refresh_gauges = broken  # type: ignore[method-assign]
    threads = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="edge_cl.daemon"):
            code = d.run(threading.Event())
    finally:
        torch.set_num_threads(threads)
    assert code == 3
    text = caplog.text
    assert "stopped (exit code 3)" in text and "exit code 0" not in text
    assert text.index("internal error") < text.index("stopped (exit code 3)")
