"""A full disk under the spool: the error raised and logged is SQLite's own, with the spool's path; the daemon
holds what arrives in memory unacknowledged, predicts it, and writes it once space is back."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.service import Daemon
from edge_cl.daemon.spool import SAMPLE, Incoming, Spool, SpoolError
from tests.broker import Collector, Mosquitto, daemon_toml, publish_all
from tests.daemon.faults import DiskFullConnection, small_tmpfs
from tests.daemon.test_service_broker import running


def _items(n: int, size: int, start: int = 0) -> list[Incoming]:
    return [Incoming(SAMPLE, f"m{i}", True, bytes(size)) for i in range(start, start + n)]


def test_sqlite_own_rollback_does_not_hide_the_disk_full_error(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool.db")
    sp._db = DiskFullConnection(sp._db)  # type: ignore[assignment]
    with pytest.raises(SpoolError) as err:
        sp.put_many(_items(3, 10))
    msg = str(err.value)
    assert "database or disk is full" in msg and str(tmp_path / "spool.db") in msg
    assert "no transaction" not in msg and "cannot rollback" not in msg
    with pytest.raises(SpoolError, match="disk is full"):  # put_salvaging must not salvage a full disk
        sp.put_salvaging(_items(1, 10, 5), lambda it, exc: it)


def test_a_really_full_disk_names_the_cause_and_the_file(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "256k") as where:
        sp = Spool(where / "spool.db")
        try:
            with pytest.raises(SpoolError) as err:
                for k in range(200):
                    sp.put_many(_items(4, 16_384, 4 * k))
            msg = str(err.value)
            assert "full" in msg and str(where / "spool.db") in msg and "no transaction" not in msg
            assert sp.read_after(0, 1000)  # what was committed before the disk filled is still there
        finally:
            sp.close()


# ---- the daemon, a real broker and a real full disk under the spool ------------------------------------------
DIM, CLASSES = 8, 3


def _spool_on(workdir: Path, port: int, spool: Path) -> Path:
    cfg = daemon_toml(workdir, port, checkpoint_every_steps=5)
    cfg.write_text(cfg.read_text().replace('path = "spool.sqlite"', f'path = "{spool}"'))
    return cfg


def _payloads(start: int, n: int) -> list[bytes]:
    rng = np.random.default_rng(start)
    return [encode_json(f"s{i}", rng.normal(size=DIM).astype(np.float32), i % CLASSES) for i in range(start, start + n)]


def _fill(where: Path) -> Path:
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as fh:  # to the last block
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def _daemon(cfg_path: Path, hold_limit: int = 10_000) -> contextlib.AbstractContextManager[Daemon]:
    return running(cfg_path, hold_limit=hold_limit, clean_exit=True)


def _wait(cond, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def _spool_errors(caplog: pytest.LogCaptureFixture, spool: Path) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(f"spool {spool} failed")]


@pytest.mark.integration
@pytest.mark.broker
def test_full_spool_disk_predicts_from_memory_acks_nothing_and_resumes(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_tmpfs(tmp_path / "small", "2m") as where:
        spool = where / "spool.sqlite"
        cfg = _spool_on(tmp_path / "d", broker.port, spool)
        col = Collector(broker.port, ["t/predictions"])
        try:
            with caplog.at_level(logging.INFO, logger="edge_cl"), _daemon(cfg) as d:
                d._link.spool_retry.min_s, d._link.spool_retry.max_s = 0.2, 0.5  # type: ignore[union-attr]
                publish_all(broker.port, "t/samples", _payloads(0, 20))
                assert _wait(lambda: d.progress.learned == 20)
                filler = _fill(where)
                publish_all(broker.port, "t/samples", _payloads(20, 60))
                # every sample predicted, though the spool could not take them all
                assert col.wait_for("t/predictions", 80, 30), col.count("t/predictions")
                assert d.metrics.value("edge_cl_spool_write_failures_total") >= 1
                assert d.progress.learned < 80 and d.metrics.value("edge_cl_messages_held") > 0
                filler.unlink()  # space is back; no restart
                assert _wait(lambda: d.progress.learned == 80), d.progress.learned
            ids = [m["id"] for m in col.json("t/predictions")]
            assert sorted(ids) == sorted(f"s{i}" for i in range(80)), "each sample predicted exactly once"
        finally:
            col.close()
        causes = _spool_errors(caplog, spool)
        assert len(causes) == 1 and "database or disk is full" in causes[0].getMessage(), causes
        assert causes[0].levelno == logging.ERROR and not causes[0].exc_info
        assert any(r.getMessage().startswith(f"spool {spool} written again") for r in caplog.records)
        assert "internal error" not in caplog.text and "MQTT link stopped" not in caplog.text


@pytest.mark.integration
@pytest.mark.broker
def test_what_a_full_spool_held_is_not_lost_by_a_stop_nor_by_the_memory_limit(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_tmpfs(tmp_path / "small", "2m") as where:
        spool = where / "spool.sqlite"
        cfg = _spool_on(tmp_path / "d", broker.port, spool)
        with caplog.at_level(logging.INFO, logger="edge_cl"):
            with _daemon(cfg, hold_limit=5) as d:
                publish_all(broker.port, "t/samples", _payloads(0, 10))
                assert _wait(lambda: d.progress.learned == 10)
                filler = _fill(where)
                publish_all(broker.port, "t/samples", _payloads(10, 40))
                assert _wait(lambda: d.metrics.value("edge_cl_messages_held") == 5)
            # stopped with the disk still full: held messages were never acknowledged
            assert "not acknowledged, so the broker sends them again" in caplog.text
            # a restart (systemd's) into the same full disk runs, holds again, and resumes once space is back
            with _daemon(cfg, hold_limit=5) as d:
                assert _wait(lambda: d.metrics.value("edge_cl_messages_held") == 5)
                filler.unlink()
                assert _wait(lambda: d.progress.learned == 50), d.progress.learned
                learned = d.progress.learned
        assert learned == 50  # each of the 50 messages learned once: neither lost nor learned twice


@pytest.mark.integration
@pytest.mark.broker
def test_messages_beyond_what_memory_holds_wait_at_the_broker_and_come_back(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_tmpfs(tmp_path / "small", "2m") as where:
        cfg = _spool_on(tmp_path / "d", broker.port, where / "spool.sqlite")
        with caplog.at_level(logging.INFO, logger="edge_cl"), _daemon(cfg, hold_limit=5) as d:
            d._link.spool_retry.min_s, d._link.spool_retry.max_s = 0.2, 0.5  # type: ignore[union-attr]
            publish_all(broker.port, "t/samples", _payloads(0, 10))
            assert _wait(lambda: d.progress.learned == 10)
            filler = _fill(where)
            publish_all(broker.port, "t/samples", _payloads(10, 40))
            assert _wait(lambda: d.metrics.value("edge_cl_messages_held") == 5)
            filler.unlink()  # no restart: the daemon reconnects so that the broker resends what it did not hold
            assert _wait(lambda: d.progress.learned == 50), d.progress.learned
            assert d.metrics.value("edge_cl_duplicates_total") <= 5  # at most the held ones come twice
        assert "reconnecting so that the broker sends again" in caplog.text
