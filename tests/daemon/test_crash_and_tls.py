"""Integration tests: kill -9 of the daemon mid-stream (exactly once after restart), and TLS + password auth
(issue #3, "Must show" 3 and 5)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_cl.daemon.codec import encode_json
from tests.broker import Collector, Mosquitto, daemon_toml, publish_all, wait_status
from tests.daemon.test_service_broker import digest, final_extra, running, samples, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.broker]


def start_daemon(cfg: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "edge_cl.cli.main", "run", str(cfg)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_9_mid_stream_then_restart_learns_each_once(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = daemon_toml(tmp_path / "d", broker.port, checkpoint_every_steps=10)
    cfg.write_text(cfg.read_text().replace("max_batch = 8", "max_batch = 2"))
    col = Collector(broker.port, ["t/status", "t/predictions"])
    data = samples(1500)
    proc = start_daemon(cfg, tmp_path)
    try:
        assert wait_status(col, "t/status", b"online", 40)
        pub = threading.Thread(target=publish_all, args=(broker.port, "t/samples",
                                                          [encode_json(i, x, y) for i, x, y in data]),
                               kwargs={"rate": 400.0})
        pub.start()
        # kill once a checkpoint exists and learning is under way, but the stream is not finished
        assert wait_until(lambda: col.count("t/predictions") > 300 and
                          any((tmp_path / "d" / "ckpt").glob("ckpt-*.pt")), 30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        seen_before = col.count("t/predictions")
        assert seen_before < len(data), "the kill did not happen mid-stream"
        n_online = len(col.messages.get("t/status", []))
        proc = start_daemon(cfg, tmp_path)
        assert wait_status(col, "t/status", b"online", 40, after=n_online)
        pub.join(30)
        ids = {i for i, _, _ in data}
        assert wait_until(lambda: {p["id"] for p in col.json("t/predictions")} >= ids, 40)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert "resumed from checkpoint" in out
    extra = final_extra(tmp_path / "d")
    assert extra["learned"] == len(data), out[-3000:]
    assert extra["learned_digest"] == digest([i for i, _, _ in data])
    col.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(mosquitto_bin: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        reason = "needs the openssl and mosquitto_passwd command-line tools"
        if os.environ.get("EDGE_CL_REQUIRE_BROKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    pki = tmp_path / "pki"
    pki.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=edge-cl test CA", cwd=pki)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=pki)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "device", "right-pass"], check=True,
                   capture_output=True)
    b = Mosquitto(mosquitto_bin, tmp_path / "broker",
                  tls={"ca": pki / "ca.crt", "cert": pki / "server.crt", "key": pki / "server.key"},
                  password_file=passwd).start()
    yield b, pki
    b.stop()


def _tls_config(tmp_path: Path, port: int, ca: Path, password: str) -> Path:
    (tmp_path / "d").mkdir(exist_ok=True)
    (tmp_path / "d" / "pw").write_text(password + "\n")
    return daemon_toml(tmp_path / "d", port,
                       broker_extra=f'ca_file = "{ca}"\nusername = "device"\npassword_file = "pw"\n')


def test_tls_and_password_connects(tls_broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b, pki = tls_broker
    cfg = _tls_config(tmp_path, b.port, pki / "ca.crt", "right-pass")
    with running(cfg) as d:
        assert wait_until(lambda: d.metrics.value("edge_cl_broker_connected") == 1, 10)


def test_wrong_password_exits_nonzero_with_clear_error(tls_broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b, pki = tls_broker
    cfg = _tls_config(tmp_path, b.port, pki / "ca.crt", "wrong-pass")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "edge_cl.cli.main", "run", str(cfg)], cwd=tmp_path,
                         check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "refused" in res.stderr and ("user name or password" in res.stderr.lower()
                                        or "not authorized" in res.stderr.lower()), res.stderr[-2000:]
    assert res.stderr.count("refused the connection") <= 2  # no retry loop hiding it
    assert time.monotonic() - t0 < 40


def test_untrusted_ca_is_a_clear_error(tls_broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b, _ = tls_broker
    other = tmp_path / "other"
    other.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "o.key", "-out", "o.crt", "-days", "2",
             "-subj", "/CN=other CA", cwd=other)
    cfg = _tls_config(tmp_path, b.port, other / "o.crt", "right-pass")
    res = subprocess.run([sys.executable, "-m", "edge_cl.cli.main", "run", str(cfg)], cwd=tmp_path,
                         check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "TLS" in res.stderr, res.stderr[-2000:]
