"""Test helpers: a real Mosquitto broker on a free loopback port, MQTT publish/collect helpers, and a
daemon config writer. Used by tests/daemon and benchmarks/daemon_throughput.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    for c in MOSQUITTO_CANDIDATES:
        found = shutil.which(c) if "/" not in c else (c if os.access(c, os.X_OK) else None)
        if found:
            return found
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on 127.0.0.1:port."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Mosquitto:
    """A Mosquitto process with a generated config; persistence on in ``workdir``."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: str = ""
    tls: dict[str, Path] | None = None       # {"ca", "cert", "key"}
    password_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def write_conf(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            "user root" if os.geteuid() == 0 else "",
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 60",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.tls:
            lines += [f"cafile {self.tls['ca']}", f"certfile {self.tls['cert']}", f"keyfile {self.tls['key']}"]
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines += ["allow_anonymous true"]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(x for x in lines if x) + "\n" + self.extra_conf)
        return conf

    def start(self) -> Mosquitto:
        conf = self.write_conf()
        self.log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=self.log, stderr=self.log)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()


class Collector:
    """Subscribes to topics (own paho client, own loop thread) and keeps every message, for assertions."""

    def __init__(self, port: int, topics: Iterable[str], client_id: str = "test-collector") -> None:
        import paho.mqtt.client as mqtt

        self.messages: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._topics = list(topics)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe([(t, 1) for t in self._topics]))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise TimeoutError("collector did not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.setdefault(msg.topic, []).append(bytes(msg.payload))

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self.messages.get(topic, []))

    def json(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(m) for m in self.messages.get(topic, [])]

    def wait_for(self, topic: str, n: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count(topic) >= n:
                return True
            time.sleep(0.02)
        return self.count(topic) >= n

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish_all(port: int, topic: str, payloads: Iterable[bytes], client_id: str = "test-publisher",
                rate: float | None = None, v5: bool = True) -> int:
    """Publish payloads with QoS 1 and wait until the broker acknowledged all of them; returns the count."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    try:
        for i, p in enumerate(payloads):
            infos.append(client.publish(topic, p, qos=1))
            if rate:
                time.sleep(1.0 / rate)
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()
    return len(infos)


def daemon_toml(workdir: Path, port: int, *, dim: int = 8, num_classes: int = 3, extra: str = "",
                broker_extra: str = "", client_id: str = "edge-cl-test", fmt: str = "json",
                checkpoint_every_steps: int = 20) -> Path:
    """Write a small daemon config (MLP, fast checkpoints, metrics off) and return its path."""
    text = f"""
[broker]
host = "127.0.0.1"
port = {port}
client_id = "{client_id}"
reconnect_min_s = 0.1
reconnect_max_s = 1.0
connect_timeout_s = 5
{broker_extra}

[topics]
samples = "t/samples"
labels = "t/labels"
predictions = "t/predictions"
dead_letter = "t/dead"
status = "t/status"

[input]
format = "{fmt}"
dim = {dim}
num_classes = {num_classes}
max_payload_bytes = 4096

[model]
type = "mlp"
input_dim = {dim}
hidden = [16]
num_classes = {num_classes}

[learner]
budget_bytes = 200000
importance = "mas"
replay_batch = 4
lr = 0.05
device = "cpu"
max_batch = 8

[checkpoint]
dir = "ckpt"
every_steps = {checkpoint_every_steps}
every_s = 2.0

[snapshot]
enabled = false

[spool]
path = "spool.sqlite"

[metrics]
enabled = false

[logging]
level = "INFO"
warn_interval_s = 0
{extra}
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "daemon.toml"
    path.write_text(text)
    return path


def wait_status(collector: Collector, topic: str, value: bytes, timeout: float, after: int = 0) -> bool:
    """Wait until ``topic`` received ``value`` as its message number ``after`` or later (the daemon's status)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with collector._lock:
            got = collector.messages.get(topic, [])[after:]
        if value in got:
            return True
        time.sleep(0.02)
    return False
