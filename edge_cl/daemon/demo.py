"""`edge-cl demo`: an embedded broker, a simulated sensor whose concept changes and comes back, edge_cl and a
plain fine-tuning learner side by side on the same messages, a live view, and files left to look at.

Nothing to set up: the broker is Mosquitto when installed (MQTT 5), else amqtt in-process (MQTT 3.1.1).
The stream runs concepts A, B, C, then A again: each concept maps 4 signal patterns over 3 channels to
the 4 classes differently, so a learner that only follows the stream forgets A. When A comes back its
first samples are predicted before any of their labels arrive: that accuracy is what each learner kept.
"""

from __future__ import annotations

import asyncio
import importlib.util
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
SCHEDULE = ("A", "B", "C", "A")     # concept of each quarter of the run
PROGRESS_EVERY_S = 5.0              # progress lines when stdout is not a terminal
PROBE = 0.3                         # fraction of the return phase whose labels are held back
EDGE, FINETUNE = "edge_cl", "fine-tuning"


# ---- the simulated sensor ---------------------------------------------------------------------------------
@dataclass
class ConceptSensor:
    """Windows ``[CHANNELS, WINDOW]`` of one of three concepts; a concept gives each class its own channel
    levels and sine frequency, drawn independently, so concepts overlap and disagree."""

    rng: np.random.Generator
    noise: float = 0.5
    _t: np.ndarray = field(init=False)
    _levels: np.ndarray = field(init=False)
    _freq: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._t = np.linspace(0, 2 * np.pi, WINDOW, dtype=np.float32)
        concepts = sorted(set(SCHEDULE))
        # levels of spread 2: distinct enough to learn each concept within a few hundred samples
        self._levels = self.rng.normal(0, 2.0, size=(len(concepts), CLASSES, CHANNELS)).astype(np.float32)
        self._freq = np.stack([self.rng.permutation(np.arange(1, CLASSES + 1)) for _ in concepts]).astype(np.float32)
        self._index = {c: i for i, c in enumerate(concepts)}

    @staticmethod
    def phase(progress: float) -> tuple[int, str]:
        """(index into SCHEDULE, concept name) at ``progress`` in [0, 1]."""
        i = min(int(progress * len(SCHEDULE)), len(SCHEDULE) - 1)
        return i, SCHEDULE[i]

    def sample(self, concept: str) -> tuple[np.ndarray, int]:
        """One window of ``concept`` and its label."""
        c = self._index[concept]
        y = int(self.rng.integers(CLASSES))
        shift = self.rng.uniform(0, 2 * np.pi)
        x = self._levels[c, y][:, None] + np.sin(self._freq[c, y] * self._t + shift)[None, :]
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
        if self.kind == "amqtt" and importlib.util.find_spec("amqtt") is None:
            raise ValueError("the demo needs an MQTT broker: install Mosquitto (apt-get install -y mosquitto) or the "
                             "embedded one with python3 -m pip install -e '.[demo]' (amqtt)")
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
                            "max_queued_messages 100000\nlog_dest none\nset_tcp_nodelay true\n")
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




# ---- the publisher and the scoreboard -----------------------------------------------------------------------
@dataclass
class Score:
    """Predictions of one learner checked against the labels the publisher knows."""

    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=200))
    by_index: dict[int, bool] = field(default_factory=dict)
    probe_ok: int = 0
    probe_n: int = 0

    def recent_accuracy(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None

    def accuracy(self) -> float | None:
        return sum(self.by_index.values()) / len(self.by_index) if self.by_index else None

    def retention(self) -> float | None:
        return self.probe_ok / self.probe_n if self.probe_n else None

    def curve(self, bin_size: int) -> list[tuple[float, float]]:
        """Accuracy per ``bin_size`` consecutive published samples, at the bin's centre."""
        bins: dict[int, list[bool]] = {}
        for i, ok in self.by_index.items():
            bins.setdefault(i // bin_size, []).append(ok)
        return [((b + 0.5) * bin_size, sum(v) / len(v)) for b, v in sorted(bins.items()) if len(v) >= bin_size // 4]


class SensorPublisher:
    """Publishes the sensor stream (labels inline for most, on the labels topic later for some; held back
    in the retention window) and scores each learner's predictions against the labels it knows."""

    def __init__(self, port: int, protocol: str, rate: float, duration: float,
                 topics: dict[str, str], seed: int = 0) -> None:
        import paho.mqtt.client as mqtt

        self.rate, self.duration = rate, duration
        self.rng = np.random.default_rng(seed)
        self.sensor = ConceptSensor(self.rng)
        self.published = 0
        self.progress = 0.0
        self.truth: dict[str, tuple[int, int, bool]] = {}     # id -> (index, label, in the retention window)
        self.scores = {name: Score() for name in topics}
        self.changes: list[tuple[int, str, float]] = []       # (sample index, label, seconds) of each concept
        self.window: tuple[int, int] | None = None            # sample indices of the retention window
        self._topics = {t: name for name, t in topics.items()}
        self._lock = threading.Lock()
        v5 = protocol == "5"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-cl-demo-sensor",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_prediction
        self.client.connect("127.0.0.1", port)
        for topic in topics.values():
            self.client.subscribe(topic, qos=0)
        self.client.loop_start()

    def _on_prediction(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            p = json.loads(msg.payload)
        except ValueError:
            return
        score = self.scores.get(self._topics.get(msg.topic, ""))
        with self._lock:
            known = self.truth.get(p.get("id"))
            if score is None or known is None:
                return
            index, y, probe = known
            ok = p.get("pred") == y
            score.recent.append(ok)
            score.by_index[index] = ok
            if probe:
                score.probe_ok += ok
                score.probe_n += 1

    def concept(self) -> str:
        i, name = ConceptSensor.phase(min(self.progress, 1.0))
        return name + (" again" if name in SCHEDULE[:i] else "")

    def run(self, stop: threading.Event) -> None:
        """Publish until ``duration`` elapsed or ``stop`` is set."""
        start = time.monotonic()
        delayed: deque[tuple[float, str, int]] = deque()
        quarter = 1.0 / len(SCHEDULE)
        probe_end = 1.0 - quarter * (1.0 - PROBE)   # progress where the held-back labels are released
        last_phase = -1
        i = 0
        while not stop.is_set():
            now = time.monotonic()
            elapsed = now - start
            if elapsed >= self.duration:
                break
            self.progress = elapsed / self.duration
            due = int(elapsed * self.rate) - i
            for _ in range(max(0, min(due, 200))):
                phase, name = self.sensor.phase(self.progress)
                if phase != last_phase:
                    last_phase = phase
                    self.changes.append((i, self.concept(), elapsed))
                probe = phase == len(SCHEDULE) - 1 and self.progress < probe_end
                if probe:
                    self.window = (self.window or (i, i))[0], i + 1
                x, y = self.sensor.sample(name)
                mid = f"demo-{i}"
                with self._lock:
                    self.truth[mid] = (i, y, probe)
                # One in five labels arrives 0.5 s later on the labels topic; in the retention window all of
                # them wait until it closes, so those samples are predicted before anything of A is relearned.
                late = probe or self.rng.random() < 0.2
                self.client.publish("demo/samples", encode_json(mid, x, None if late else y), qos=1)
                if late:
                    release = start + probe_end * self.duration + 0.05 if probe else now + 0.5
                    delayed.append((release, mid, y))
                i += 1
                self.published = i
            ready = sorted((d for d in delayed if d[0] <= now), key=lambda d: d[0])
            for d in ready:
                delayed.remove(d)
                self.client.publish("demo/labels", json.dumps({"id": d[1], "y": d[2]}).encode(), qos=1)
            stop.wait(0.01)
        for _, mid, y in delayed:  # a stream cut short still gets its labels
            self.client.publish("demo/labels", json.dumps({"id": mid, "y": y}).encode(), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ---- wiring ---------------------------------------------------------------------------------------------------
def learner_settings(kind: str) -> dict[str, Any]:
    """The [learner] table of each side: the same model, step size and batching; fine-tuning has no replay,
    no importance penalty and no consolidation."""
    common = {"lr": 0.05, "device": "auto", "max_batch": 16, "budget_bytes": 400_000}
    if kind == EDGE:
        return {**common, "method": "der++", "replay_batch": 16, "trigger": "plateau"}
    return {**common, "method": "sgd", "replay_batch": 0, "trigger": "none"}


def demo_settings(workdir: Path, port: int, protocol: str, kind: str = EDGE) -> dict[str, Any]:
    """The daemon config of one side of the demo, as plain TOML-able data."""
    tag = "" if kind == EDGE else "-finetune"
    return {
        "broker": {"host": "127.0.0.1", "port": port, "client_id": f"edge-cl-demo{tag}", "protocol": protocol,
                   "reconnect_min_s": 0.2, "reconnect_max_s": 2.0},
        "topics": {"samples": "demo/samples", "labels": "demo/labels", "predictions": f"demo/predictions{tag}",
                   "dead_letter": f"demo/dead-letter{tag}", "status": f"demo/status{tag}", "predictions_qos": 0},
        "input": {"shape": [CHANNELS, WINDOW], "num_classes": CLASSES},
        "model": {"type": "mlp", "input_dim": CHANNELS * WINDOW, "hidden": [64], "num_classes": CLASSES},
        "learner": learner_settings(kind),
        "labels": {"window_s": 5.0},
        "checkpoint": {"dir": str(workdir / f"checkpoints{tag}"), "every_steps": 1000, "every_s": 15.0},
        "snapshot": {"enabled": False},
        "spool": {"path": str(workdir / f"spool{tag}.sqlite")},
        "metrics": {"enabled": kind == EDGE, "host": "127.0.0.1", "port": 0},
        "logging": {"level": "WARNING"},
    }


def demo_config(workdir: Path, port: int, protocol: str, kind: str = EDGE) -> Config:
    """The validated daemon config of one side of the demo (a small MLP on 3 channels x 16 samples)."""
    return parse_config(demo_settings(workdir, port, protocol, kind))


def to_toml(data: dict[str, Any]) -> str:
    """Tables of scalars and lists as TOML (enough for the configs the demo writes)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)


def real_broker_toml() -> str:
    """The edge_cl side's config for ``edge-cl run`` against a broker of your own (paths beside the file)."""
    data = demo_settings(Path("state"), 1883, "5")
    data["broker"] = {"host": "localhost", "port": 1883, "client_id": "edge-cl-demo"}
    data["checkpoint"] = {"dir": "state/checkpoints"}
    data["spool"] = {"path": "state/spool.sqlite"}
    data["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": 9464}
    data["logging"] = {"level": "INFO"}
    return ("# Written by `edge-cl demo`: the demo's edge_cl learner, for `edge-cl run` against your own broker.\n"
            "# Publish samples as JSON {\"id\": ..., \"x\": [48 floats], \"y\": class} on demo/samples; labels that come\n"
            "# later go to demo/labels as {\"id\": ..., \"y\": ...}. Every key: deploy/config/example.toml.\n\n"
            + to_toml(data))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:5.1f} %"


def _kb(v: float) -> str:
    return f"{v / 1e3:.0f} kB"


def _view(status: dict[str, dict[str, Any]], pub: SensorPublisher, elapsed: float, duration: float,
          broker: str, url: str | None) -> Any:
    from rich.table import Table

    title = f"edge-cl demo ({broker} broker)  {elapsed:5.1f} / {duration:.0f} s"
    t = Table(title=title, caption=f"status page: {url}" if url else None)
    t.add_column(f"concept now: {pub.concept()}  (changes so far: {max(0, len(pub.changes) - 1)})", style="bold")
    for name in status:
        t.add_column(name + (" (DER++)" if name == EDGE else " (no replay)"), justify="right")

    def row(label: str, fn: Any) -> None:
        t.add_row(label, *(fn(name, st) for name, st in status.items()))

    row("published / predicted", lambda n, st: f"{pub.published} / {int(st.get('predictions', 0))}")
    row("samples learned", lambda n, st: str(st.get("samples_learned", 0)))
    row("recent accuracy (last 200)", lambda n, st: _pct(pub.scores[n].recent_accuracy()))
    row("accuracy since start", lambda n, st: _pct(pub.scores[n].accuracy()))
    if pub.window is not None:
        row("A on its return (retention)", lambda n, st: _pct(pub.scores[n].retention()))
    row("consolidations (loss plateaus)", lambda n, st: str(st.get("consolidations", 0)))
    row("replay buffer", lambda n, st: "none" if not st.get("buffer_capacity") else
        f"{st.get('buffer_size', 0)} / {st['buffer_capacity']} samples ({_pct(st.get('buffer_fill'))})")
    row("state bytes (reserved) / budget", lambda n, st: f"{_kb(st.get('reserved', 0))} / {_kb(st.get('budget', 0))}")
    row("update latency (mean)", lambda n, st: "-" if st.get("update_ms") is None else f"{st['update_ms']:.2f} ms")
    row("spool depth (lag)", lambda n, st: str(int(st.get("spool_depth", 0))))
    t.add_row("chance", _pct(1 / CLASSES), _pct(1 / CLASSES))
    return t


def progress_line(status: dict[str, dict[str, Any]], pub: SensorPublisher, elapsed: float, duration: float) -> str:
    """One plain line of the live view, printed every few seconds when stdout is not a terminal (a pipe, a log
    file, CI), where the live table would show nothing until the end."""
    acc = " / ".join(f"{name} {_pct(pub.scores[name].recent_accuracy()).strip()}" for name in status)
    learned = int(status.get(EDGE, {}).get("samples_learned", 0))
    return (f"[{elapsed:5.1f} / {duration:.0f} s] concept {pub.concept()}: published {pub.published}, edge_cl "
            f"learned {learned}; recent accuracy {acc}")


def _status(daemon: Any) -> dict[str, Any]:
    st = dict(daemon.status())
    page = daemon.page_status()
    st.update({"reserved": page.get("budget", {}).get("reserved", 0), "parts": page.get("budget", {}).get("parts", {}),
               "buffer_size": page.get("buffer", {}).get("size", 0),
               "buffer_capacity": page.get("buffer", {}).get("capacity", 0)})
    return st


@dataclass
class DemoResult:
    """What the demo measured; ``retention`` is the accuracy on concept A's return, before its labels."""

    exit_code: int
    retention: dict[str, float | None]
    accuracy: dict[str, float | None]
    files: dict[str, Path]
    interrupted: bool


def _write_outputs(out: Path, pub: SensorPublisher, edge_history: dict[str, Any], status: dict[str, Any],
                   duration: float) -> dict[str, Path]:
    from edge_cl.daemon.demo_plot import accuracy_svg

    out.mkdir(parents=True, exist_ok=True)
    bin_size = max(20, pub.published // 60)
    window = None if pub.window is None else (float(pub.window[0]), float(pub.window[1]))
    svg = accuracy_svg({name: s.curve(bin_size) for name, s in pub.scores.items()},
                       [(float(i), label) for i, label, _ in pub.changes],
                       # the daemon counts samples learned; nearly one to one with those published here
                       [float(m["learned"]) for m in edge_history.get("marks", []) if m["kind"] == "consolidation"],
                       window, "edge-cl demo: accuracy over the stream, concepts A, B, C, then A again",
                       chance=1 / CLASSES)
    files = {"plot": out / "accuracy.svg", "summary": out / "summary.json", "config": out / "edge-cl.toml"}
    files["plot"].write_text(svg)
    files["config"].write_text(real_broker_toml())
    files["summary"].write_text(json.dumps({
        "duration_s": duration, "published": pub.published,
        "concepts": [{"from_sample": i, "concept": c, "at_s": round(t, 2)} for i, c, t in pub.changes],
        "retention_window": pub.window,
        "retention": {n: s.retention() for n, s in pub.scores.items()},
        "accuracy": {n: s.accuracy() for n, s in pub.scores.items()},
        "edge_cl": {k: status.get(k) for k in ("consolidations", "samples_learned", "reserved", "budget", "parts",
                                               "buffer_size", "buffer_capacity")},
    }, indent=2) + "\n")
    return files


def run_demo(duration: float = 60.0, rate: float = 200.0, broker: str = "auto", live: bool = True,
             out: Path = Path("edge-cl-demo")) -> DemoResult:
    """Run the whole demo for ``duration`` seconds (Ctrl-C ends it early, cleanly); prints the result and
    writes the plot, a summary and a config for ``edge-cl run`` into ``out``."""
    from rich.console import Console
    from rich.live import Live

    from edge_cl.daemon.logsetup import configure_logging
    from edge_cl.daemon.service import Daemon, apply_process_settings

    if duration <= 0 or rate <= 0:
        raise ValueError(f"duration={duration} and rate={rate} must be positive")
    console = Console(soft_wrap=True)  # result lines stay whole, for readers and for grep
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="edge-cl-demo-") as tmp:
        workdir = Path(tmp)
        emb = EmbeddedBroker(workdir, broker)
        daemons: dict[str, Any] = {}
        threads: list[threading.Thread] = []
        codes: dict[str, int] = {}
        daemon_stop = threading.Event()
        pub: SensorPublisher | None = None
        try:
            emb.start()
            for kind in (EDGE, FINETUNE):
                cfg = demo_config(workdir, emb.port, emb.protocol, kind)
                if kind == EDGE:
                    configure_logging(cfg.logging.level, cfg.logging.format)
                    apply_process_settings(cfg)
                d = daemons[kind] = Daemon(cfg)
                t = threading.Thread(target=lambda k=kind, d=d: codes.__setitem__(k, d.run(daemon_stop)),
                                     name=f"demo-daemon-{kind}", daemon=True)
                threads.append(t)
                t.start()
            for kind, d in daemons.items():
                if not d.ready.wait(60) or d.learner is None:
                    console.print(f"[red]the {kind} daemon did not start: {d.exit_reason}")
                    return DemoResult(1, {}, {}, {}, False)
            url = f"http://127.0.0.1:{daemons[EDGE].metrics_port}/" if daemons[EDGE].metrics_port else None
            pub = SensorPublisher(emb.port, emb.protocol, rate, duration,
                                  {name: d.cfg.topics.predictions for name, d in daemons.items()})
            pt = threading.Thread(target=pub.run, args=(stop,), name="demo-sensor", daemon=True)
            start = time.monotonic()
            pt.start()
            marked = 0

            def refresh() -> Any:
                nonlocal marked
                for _, label, _ in pub.changes[marked:]:  # concept changes on the status page's curve
                    daemons[EDGE].history.mark(daemons[EDGE].progress.learned, f"concept {label}")
                marked = len(pub.changes)
                return _view({n: _status(d) for n, d in daemons.items()}, pub, time.monotonic() - start,
                             duration, emb.kind, url)

            terminal = console.is_terminal
            if not terminal:  # no live table: say what runs, then a line every few seconds
                console.print(f"edge-cl demo ({emb.kind} broker): {duration:.0f} s, a progress line every "
                              f"{PROGRESS_EVERY_S:.0f} s" + (f"; status page: {url}" if url else ""))
            next_line = start + PROGRESS_EVERY_S
            with Live(console=console, refresh_per_second=4, transient=not live) as view:
                while pt.is_alive() and all(t.is_alive() for t in threads):
                    view.update(refresh())
                    if not terminal and time.monotonic() >= next_line:
                        next_line += PROGRESS_EVERY_S
                        console.print(progress_line({n: _status(d) for n, d in daemons.items()}, pub,
                                                    time.monotonic() - start, duration))
                    time.sleep(0.25)
                # let both daemons catch up on what was published (bounded; Ctrl-C skips the wait)
                end = time.monotonic() + 5
                while not stop.is_set() and time.monotonic() < end and \
                        any(d.status().get("spool_depth", 0) > 0 for d in daemons.values()):
                    time.sleep(0.1)
                time.sleep(0.3)  # the last predictions in flight
                view.update(refresh())
            interrupted = stop.is_set()
        finally:
            daemon_stop.set()
            for t in threads:
                t.join(30)
            if pub is not None:
                pub.close()
            emb.stop()
            signal.signal(signal.SIGINT, previous)
        if pub is None:
            return DemoResult(1, {}, {}, {}, interrupted)
        st = _status(daemons[EDGE])
        files = _write_outputs(out, pub, daemons[EDGE].history.to_json(), st, duration)
    elapsed = time.monotonic() - start
    console.print()
    if interrupted:
        console.print(f"[yellow]interrupted after {elapsed:.1f} s of {duration:.0f} s; results so far:")
    ret = {n: s.retention() for n, s in pub.scores.items()}
    acc = {n: s.accuracy() for n, s in pub.scores.items()}
    kept, tuned = ret[EDGE], ret[FINETUNE]
    if kept is not None and tuned is not None and pub.window is not None:
        n_probe = pub.window[1] - pub.window[0]
        console.print(f"concept A came back after B and C; its first {n_probe} samples were predicted before any "
                      "of their labels arrived:")
        console.print(f"[bold]edge_cl remembers A: {100 * kept:.1f}% / fine-tuning: {100 * tuned:.1f}%"
                      f"[/bold]  (chance {100 / CLASSES:.0f}%)")
    else:
        console.print("the stream ended before concept A came back: no retention figure (run longer)")
    console.print(f"accuracy over the whole stream: edge_cl {_pct(acc[EDGE]).strip()} / fine-tuning "
                  f"{_pct(acc[FINETUNE]).strip()}; published {pub.published}, edge_cl learned "
                  f"{st.get('samples_learned', 0)}, consolidations {st.get('consolidations', 0)}")
    parts = st.get("parts", {})
    console.print(f"edge_cl state: {_kb(st.get('reserved', 0))} reserved of a {_kb(st.get('budget', 0))} budget ("
                  + ", ".join(f"{k} {_kb(v)}" for k, v in parts.items() if v) +
                  f"); replay buffer {st.get('buffer_size', 0)} of {st.get('buffer_capacity', 0)} samples "
                  f"({_pct(st.get('buffer_fill')).strip()} full; its bytes are reserved from the start)")
    console.print(f"plot: {files['plot'].resolve()}  (summary: {files['summary'].name}, config: {files['config'].name})")
    console.print(f"next: run the same learner against your own broker: edit \\[broker] in {files['config']}, then "
                  f"`edge-cl run {files['config']}` (status page on http://127.0.0.1:9464/)")
    code = 130 if interrupted else max(codes.values(), default=1) if len(codes) == 2 else 1
    return DemoResult(code, ret, acc, files, interrupted)
