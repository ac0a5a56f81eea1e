"""Real Flower processes on loopback for the fleet tests: a SuperLink, one SuperNode per device and `flwr run`
of edge_cl's Flower App, insecure or on TLS with a test CA. Every address is 127.0.0.1 and Flower's telemetry is
off (tests/fleet/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import edge_cl.fleet

APP_DIR = Path(edge_cl.fleet.__file__).parent / "app"
REPO = Path(edge_cl.fleet.__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.skip(f"{name} is not on PATH (install 'edge-cl[fleet]')")
    return path


class Processes:
    """Started processes, each in its own session (a SuperNode's ClientApps, a SuperLink's ServerApp go with
    it), stopped at the end; ``logs`` shows the tail of each one's output."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
                                    start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def logs(self) -> str:
        names = dict.fromkeys(name for name, _ in self.procs)
        return "\n".join(f"--- {name} ---\n" + (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]
                         for name in names)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait_s: float = 15) -> None:
        """Signal ``proc``'s whole session, then SIGKILL it if it outlives ``wait_s``."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.procs:
            self.kill(proc)


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 (what docs/fleet.md's TLS section has the user make)."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS fleet tests need the openssl command-line tool (Debian: openssl)")
    folder.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=edge-cl fleet test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return {"ca": folder / "ca.crt", "cert": folder / "server.crt", "key": folder / "server.key"}


def wait_listening(port: int, procs: Processes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}\n{procs.logs()}")


class Flower:
    """A SuperLink on a fixed loopback port (so a restarted one is found where the SuperNodes left it), its
    SuperNodes and runs of the Flower App, under ``tmp``."""

    def __init__(self, tmp: Path, tls: bool = False) -> None:
        self.tmp = tmp
        self.link_port = free_port()
        home = tmp / "flwr-home"
        home.mkdir(exist_ok=True)
        self.pki = make_pki(tmp / "pki") if tls else None
        # The SuperLink's APIs on TLS; the SuperNodes and `flwr run` verify it with the test CA.
        self.link_tls = (["--ssl-ca-certfile", str(self.pki["ca"]), "--ssl-certfile", str(self.pki["cert"]),
                          "--ssl-keyfile", str(self.pki["key"])] if self.pki else ["--insecure"])
        self.node_tls = ["--root-certificates", str(self.pki["ca"])] if self.pki else ["--insecure"]
        secure = f'root-certificates = "{self.pki["ca"]}"\n' if self.pki else "insecure = true\n"
        # `flwr run` finds the SuperLink through a named connection in $FLWR_HOME/config.toml.
        (home / "config.toml").write_text(f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
                                          f'address = "127.0.0.1:{self.link_port}"\n{secure}')
        self.env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.procs = Processes(tmp, self.env)
        self.superlink: subprocess.Popen[bytes] | None = None
        self.link_starts = 0

    def start_superlink(self) -> None:
        self.link_starts += 1
        self.superlink = self.procs.start(
            f"superlink{self.link_starts}", tool("flower-superlink"), *self.link_tls, "--host", "127.0.0.1",
            "--port", str(self.link_port), "--disable-runtime-dependency-installation",
            # Its state in a file: a restarted SuperLink still knows the SuperNodes (an in-memory one answers
            # their heartbeats 401 and they exit).
            "--database", str(self.tmp / "superlink.db"))
        wait_listening(self.link_port, self.procs)

    def kill_superlink(self) -> None:
        """SIGKILL the SuperLink and every process it started (its SuperExec and the ServerApp, which Flower
        detaches into sessions of their own): the server disappears at once, as on a power cut."""
        assert self.superlink is not None
        tree = psutil.Process(self.superlink.pid).children(recursive=True)
        self.procs.kill(self.superlink, signal.SIGKILL)
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(tree, timeout=10)

    def start_supernode(self, i: int, address: str, token_file: Path, superlink_port: int | None = None) -> None:
        """SuperNode ``i`` for the daemon channel at ``address``; ``superlink_port``: where it dials the SuperLink
        (default the SuperLink's own port; the fleet benchmark puts a byte-counting proxy there)."""
        self.procs.start(f"supernode{i}", tool("flower-supernode"), *self.node_tls,
                         "--superlink", f"127.0.0.1:{superlink_port or self.link_port}", "--host", "127.0.0.1",
                         "--port", str(free_port()),
                         "--node-config", f"fleet-address='{address}' fleet-token-file='{token_file}'")

    def run_app(self, run_config: str, name: str = "flwr-run") -> subprocess.Popen[bytes]:
        """`flwr run` of edge_cl's Flower App, streaming its logs until the run ends."""
        return self.procs.start(name, tool("flwr"), "run", str(APP_DIR), "local", "--stream",
                                "--run-config", run_config)

    def stop(self) -> None:
        self.procs.stop()
