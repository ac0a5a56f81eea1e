"""`edge-cl demo`: an embedded broker, a simulated drifting multichannel sensor, the daemon, a live view.

Nothing to set up: the broker is Mosquitto when installed (MQTT 5), else amqtt in-process (MQTT 3.1.1);
all state lives in a temporary directory. The sensor's classes are signal patterns over 3 channels;
an abrupt drift swaps the patterns of two classes, a gradual drift then adds a growing offset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_cl.config import Config, parse_config
from edge_cl.daemon.codec import encode_json

log = logging.getLogger("edge_cl.demo")

CHANNELS, WINDOW, CLASSES = 3, 16, 4


# ---- the simulated sensor ---------------------------------------------------------------------------------
@dataclass
class DriftingSensor:
    """Windows ``[CHANNELS, WINDOW]`` whose class patterns drift: abrupt at ``abrupt_at``, gradual after ``gradual_from``
    (both fractions of the run)."""

    rng: np.random.Generator
    abrupt_at: float = 0.4
    gradual_from: float = 0.7
    noise: float = 0.5
    _t: np.ndarray = field(init=False)
    _levels: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._t = np.linspace(0, 2 * np.pi, WINDOW, dtype=np.float32)
        # per class: one level per channel and a frequency; distinct enough to learn within seconds
        self._levels = self.rng.normal(0, 1.5, size=(CLASSES, CHANNELS)).astype(np.float32)
        self._freq = np.array([1, 2, 3, 4], dtype=np.float32)

    def phase(self, progress: float) -> str:
        """Name of the drift phase at ``progress`` in [0, 1]."""
        if progress < self.abrupt_at:
            return "initial"
        return "abrupt drift (classes 0/1 swapped)" if progress < self.gradual_from else "gradual drift (offset grows)"

    def sample(self, progress: float) -> tuple[np.ndarray, int]:
        """One window and its label at ``progress`` in [0, 1] of the run."""
        y = int(self.rng.integers(CLASSES))
        pattern = y
        if progress >= self.abrupt_at and y in (0, 1):
            pattern = 1 - y
        phase = self.rng.uniform(0, 2 * np.pi)
        x = self._levels[pattern][:, None] + np.sin(self._freq[pattern] * self._t + phase)[None, :]
        if progress >= self.gradual_from:
            x = x + 2.0 * (progress - self.gradual_from) / (1 - self.gradual_from)
        x = x + self.rng.normal(0, self.noise, size=x.shape)
        return x.astype(np.float32).ravel(), y


# ---- the embedded broker ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Mosquitto (a subprocess, MQTT 5) when installed, else amqtt in a thread of this process (MQTT 3.1.1)."""

    def __init__(self, workdir: Path, prefer: str = "auto") -> None:
        if prefer not in ("auto", "mosquitto", "amqtt"):
            raise ValueError(f"broker={prefer!r} is not supported; use 'auto', 'mosquitto' or 'amqtt'")
        self.port = _free_port()
        self.workdir = workdir
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
        if prefer == "mosquitto" and binary is None:
            raise ValueError("broker='mosquitto' but no mosquitto binary was found; install it or use 'amqtt'")
        self.kind = "mosquitto" if binary and prefer != "amqtt" else "amqtt"
        self.protocol = "5" if self.kind == "mosquitto" else "3.1.1"
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(("user root\n" if os.geteuid() == 0 else "") +
                            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                            "max_queued_messages 100000\nlog_dest none\n")
            self._proc = subprocess.Popen([str(self._binary), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
        else:
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run_amqtt, args=(ready,), name="demo-amqtt", daemon=True)
            self._thread.start()
            ready.wait(15)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the embedded {self.kind} broker did not start on port {self.port}")

    def _run_amqtt(self, ready: threading.Event) -> None:
        from amqtt.broker import Broker

        async def main() -> None:
            self._stop_async = asyncio.Event()
            broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                             "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
            await broker.start()
            ready.set()
            await self._stop_async.wait()
            await broker.shutdown()

        self._loop = asyncio.new_event_loop()
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            self._loop.run_until_complete(main())
        finally:
            ready.set()
            self._loop.close()

    def stop(self) -> None:
        """Stop the broker (idempotent)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._thread is not None and self._loop is not None and self._stop_async is not None:
            self._loop.call_soon_threadsafe(self._stop_async.set)
            self._thread.join(10)
            self._thread = None


# ---- the publisher ------------------------------------------------------------------------------------------
class SensorPublisher:
    """Publishes the sensor stream (labels inline for most, on the labels topic later for some) and checks
    the predictions it gets back against the labels it knows."""

    def __init__(self, port: int, protocol: str, rate: float, duration: float, seed: int = 0) -> None:
        import paho.mqtt.client as mqtt

        self.rate, self.duration = rate, duration
        self.rng = np.random.default_rng(seed)
        self.sensor = DriftingSensor(self.rng)
        self.published = 0
        self.truth: dict[str, int] = {}
        self.recent: deque[bool] = deque(maxlen=200)
        self.correct = self.answered = 0
        self.progress = 0.0
        self._lock = threading.Lock()
        v5 = protocol == "5"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-cl-demo-sensor",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_prediction
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("demo/predictions", qos=0)
        self.client.loop_start()

    def _on_prediction(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            p = json.loads(msg.payload)
        except ValueError:
            return
        with self._lock:
            y = self.truth.pop(p.get("id"), None)
            if y is not None:
                ok = p.get("pred") == y
                self.recent.append(ok)
                self.correct += ok
                self.answered += 1

    def recent_accuracy(self) -> float | None:
        """Accuracy of the last 200 predictions checked (shows the dips at drifts)."""
        with self._lock:
            return sum(self.recent) / len(self.recent) if self.recent else None

    def run(self, stop: threading.Event) -> None:
        """Publish until ``duration`` elapsed or ``stop`` is set."""
        start = time.monotonic()
        delayed: deque[tuple[float, str, int]] = deque()
        i = 0
        while not stop.is_set():
            now = time.monotonic()
            elapsed = now - start
            if elapsed >= self.duration:
                break
            self.progress = elapsed / self.duration
            due = int(elapsed * self.rate) - i
            for _ in range(max(0, min(due, 200))):
                x, y = self.sensor.sample(self.progress)
                mid = f"demo-{i}"
                with self._lock:
                    self.truth[mid] = y
                late = self.rng.random() < 0.2  # one in five labels arrives later on the labels topic
                self.client.publish("demo/samples", encode_json(mid, x, None if late else y), qos=1)
                if late:
                    delayed.append((now + 0.5, mid, y))
                i += 1
                self.published = i
            while delayed and delayed[0][0] <= now:
                _, mid, y = delayed.popleft()
                self.client.publish("demo/labels", json.dumps({"id": mid, "y": y}).encode(), qos=1)
            stop.wait(0.01)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ---- wiring ---------------------------------------------------------------------------------------------------
def demo_config(workdir: Path, port: int, protocol: str) -> Config:
    """The daemon config the demo runs: a small MLP on 3 channels x 16 samples (fast on CPU), MAS, plateau trigger."""
    return parse_config({
        "broker": {"host": "127.0.0.1", "port": port, "client_id": "edge-cl-demo", "protocol": protocol,
                   "reconnect_min_s": 0.2, "reconnect_max_s": 2.0},
        "topics": {"samples": "demo/samples", "labels": "demo/labels", "predictions": "demo/predictions",
                   "dead_letter": "demo/dead-letter", "status": "demo/status", "predictions_qos": 0},
        "input": {"shape": [CHANNELS, WINDOW], "num_classes": CLASSES},
        "model": {"type": "mlp", "input_dim": CHANNELS * WINDOW, "hidden": [64], "num_classes": CLASSES},
        "learner": {"budget_bytes": 400_000, "importance": "mas", "replay_batch": 16, "lr": 0.05,
                    "trigger": "plateau", "device": "auto", "max_batch": 16},
        "labels": {"window_s": 5.0},
        "checkpoint": {"dir": str(workdir / "checkpoints"), "every_steps": 1000, "every_s": 15.0},
        "snapshot": {"enabled": False},
        "spool": {"path": str(workdir / "spool.sqlite")},
        "metrics": {"enabled": False},
        "logging": {"level": "WARNING"},
    })


def _view(status: dict[str, Any], pub: SensorPublisher, elapsed: float, duration: float, broker: str) -> Any:
    from rich.table import Table

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:5.1f} %"

    t = Table(title=f"edge-cl demo ({broker} broker)  {elapsed:5.1f} / {duration:.0f} s", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    rows = [
        ("stream phase", pub.sensor.phase(min(pub.progress, 1.0))),
        ("published / predicted", f"{pub.published} / {int(status.get('predictions', 0))}"),
        ("samples learned", str(status.get("samples_learned", 0))),
        ("prequential accuracy", pct(status.get("prequential_accuracy"))),
        ("recent accuracy (200)", pct(pub.recent_accuracy())),
        ("chance", pct(1 / CLASSES)),
        ("drifts detected = consolidations", str(status.get("consolidations", 0))),
        ("replay buffer fill", pct(status.get("buffer_fill"))),
        ("budget use", f"{status.get('budget_used', 0) / 1e3:.0f} / {status.get('budget', 0) / 1e3:.0f} kB"),
        ("update latency (mean)", "-" if status.get("update_ms") is None else f"{status['update_ms']:.2f} ms"),
        ("spool depth (lag)", str(int(status.get("spool_depth", 0)))),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


def run_demo(duration: float = 60.0, rate: float = 200.0, broker: str = "auto", live: bool = True) -> int:
    """Run the whole demo for ``duration`` seconds; prints a summary; returns the exit code."""
    from rich.console import Console
    from rich.live import Live

    from edge_cl.daemon.logsetup import configure_logging
    from edge_cl.daemon.service import Daemon, apply_process_settings

    if duration <= 0 or rate <= 0:
        raise ValueError(f"duration={duration} and rate={rate} must be positive")
    console = Console()
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="edge-cl-demo-") as tmp:
        workdir = Path(tmp)
        emb = EmbeddedBroker(workdir, broker)
        emb.start()
        cfg = demo_config(workdir, emb.port, emb.protocol)
        configure_logging(cfg.logging.level, cfg.logging.format)
        apply_process_settings(cfg)
        daemon = Daemon(cfg)
        daemon_stop = threading.Event()
        codes: list[int] = []
        dt = threading.Thread(target=lambda: codes.append(daemon.run(daemon_stop)), name="demo-daemon", daemon=True)
        pub: SensorPublisher | None = None
        try:
            dt.start()
            if not daemon.ready.wait(60) or daemon.learner is None:
                console.print(f"[red]the daemon did not start: {daemon.exit_reason}")
                return 1
            pub = SensorPublisher(emb.port, emb.protocol, rate, duration)
            pt = threading.Thread(target=pub.run, args=(stop,), name="demo-sensor", daemon=True)
            start = time.monotonic()
            pt.start()
            with Live(console=console, refresh_per_second=4, transient=not live) as view:
                while pt.is_alive() and dt.is_alive():
                    view.update(_view(daemon.status(), pub, time.monotonic() - start, duration, emb.kind))
                    time.sleep(0.25)
                # let the daemon catch up on what was published (bounded)
                end = time.monotonic() + 5
                while time.monotonic() < end and daemon.status().get("spool_depth", 0) > 0:
                    time.sleep(0.1)
                view.update(_view(daemon.status(), pub, time.monotonic() - start, duration, emb.kind))
        finally:
            daemon_stop.set()
            dt.join(30)
            if pub is not None:
                pub.close()
            emb.stop()
            signal.signal(signal.SIGINT, previous)
        console.print()
        st = daemon.status()
        acc = st.get("prequential_accuracy")
        console.print(f"published {pub.published if pub else 0} samples, learned {st.get('samples_learned', 0)}, "
                      f"consolidations {st.get('consolidations', 0)}, bad inputs {int(st.get('bad_inputs', 0))}")
        console.print(f"prequential accuracy: {acc if acc is not None else float('nan'):.3f} "
                      f"(chance {1 / CLASSES:.3f})")
        return codes[0] if codes else 1
