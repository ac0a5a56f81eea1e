"""End-to-end throughput of the daemon and the latency the spool adds per message.

A Mosquitto broker (MQTT 5), the daemon as a subprocess (`edge-cl run`, MLP 784-100-100-10, MAS,
replay 10, one torch thread), a publisher pushing N MNIST digits as fast as the broker takes them
(QoS 1), and a subscriber counting predictions. Throughput = N / (first publish -> last prediction
received): broker -> spool (fsync'd) -> decode -> predict -> learn -> prediction published.
The spool's own cost is measured apart: one fsync'd transaction per message, and per message when
the network thread batches what arrived together (as the daemon does).

    python benchmarks/daemon_throughput.py [--messages 4000] [--formats json,binary] [--max-batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from edge_cl.bench.datasets import load_images
from edge_cl.daemon.codec import encode_binary, encode_json
from edge_cl.daemon.demo import EmbeddedBroker, _free_port
from edge_cl.daemon.spool import SAMPLE, Incoming, Spool
from edge_cl.reporting import machine_line, write_section

CONFIG = """
[broker]
host = "127.0.0.1"
port = {port}
client_id = "bench-daemon"
[topics]
samples = "bench/samples"
labels = "bench/labels"
predictions = "bench/predictions"
dead_letter = "bench/dead"
status = "bench/status"
predictions_qos = {pred_qos}
[input]
format = "{fmt}"
dim = 784
num_classes = 10
[model]
type = "mlp"
input_dim = 784
hidden = [100, 100]
num_classes = 10
[learner]
budget_bytes = 2000000
importance = "mas"
replay_batch = 10
lr = 0.1
device = "{device}"
threads = 1
max_batch = {max_batch}
[checkpoint]
dir = "ckpt"
every_steps = 100000
every_s = 30.0
[snapshot]
enabled = false
[spool]
path = "spool.sqlite"
[metrics]
enabled = true
port = {metrics_port}
[logging]
level = "WARNING"
"""


def scrape(port: int) -> dict[str, float]:
    """The daemon's Prometheus samples (unlabelled names and name{labels} as keys)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def run_daemon_once(fmt: str, xs: np.ndarray, ys: np.ndarray, max_batch: int, workdir: Path,
                    rate: float | None = None, device: str = "cpu") -> dict[str, Any]:
    """One daemon run; ``rate`` None publishes in one burst, else at ``rate`` messages per second."""
    import paho.mqtt.client as mqtt

    broker = EmbeddedBroker(workdir, "mosquitto")
    broker.start()
    metrics_port = _free_port()
    cfg = workdir / "daemon.toml"
    cfg.write_text(CONFIG.format(port=broker.port, fmt=fmt, max_batch=max_batch, metrics_port=metrics_port, device=device,
                                 pred_qos=1))
    got: list[dict[str, Any]] = []
    online = threading.Event()
    done = threading.Event()
    n = len(xs)
    last = [0.0]

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == "bench/status":
            if msg.payload == b"online":
                online.set()
            return
        got.append(json.loads(msg.payload))
        last[0] = time.perf_counter()
        if len(got) >= n:
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe([("bench/predictions", 1), ("bench/status", 1)])
    sub.loop_start()
    proc = subprocess.Popen([sys.executable, "-m", "edge_cl.cli.main", "run", str(cfg)], cwd=workdir)
    try:
        if not online.wait(120):
            raise RuntimeError("daemon did not come online")
        enc = (lambda i: encode_json(f"m{i}", xs[i], int(ys[i]))) if fmt == "json" else \
            (lambda i: encode_binary(f"m{i}", xs[i], int(ys[i])))
        payloads = [enc(i) for i in range(n)]
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        t0 = time.perf_counter()
        infos = []
        for i, p in enumerate(payloads):
            if rate:
                ahead = t0 + i / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            infos.append(pub.publish("bench/samples", p, qos=1))
        for info in infos:
            info.wait_for_publish(120)
        t_pub = time.perf_counter() - t0
        if not done.wait(300):
            raise RuntimeError(f"only {len(got)} of {n} predictions arrived")
        elapsed = last[0] - t0
        m = scrape(metrics_port)
        pub.loop_stop()
        pub.disconnect()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
    lat = np.array([p["latency_ms"] for p in got])
    writes = m.get("edge_cl_spool_write_seconds_count", 0.0)
    steps = m.get("edge_cl_update_latency_seconds_count", 0.0)
    return {
        "format": fmt, "mode": f"steady {rate:.0f}/s" if rate else "burst", "messages": n, "payload_bytes": int(np.mean([len(p) for p in payloads])),
        "seconds": elapsed, "rate": n / elapsed, "publish_seconds": t_pub,
        "lat_p50": float(np.percentile(lat, 50)), "lat_p99": float(np.percentile(lat, 99)),
        "spool_write_ms": 1000 * m.get("edge_cl_spool_write_seconds_sum", 0.0) / max(writes, 1),
        "msgs_per_write": m.get('edge_cl_messages_received_total{kind="sample"}', 0.0) / max(writes, 1),
        "update_ms": 1000 * m.get("edge_cl_update_latency_seconds_sum", 0.0) / max(steps, 1),
        "batch": m.get("edge_cl_samples_learned_total", 0.0) / max(steps, 1),
        "learned": int(m.get("edge_cl_samples_learned_total", 0.0)),
        "accuracy": m.get("edge_cl_prequential_accuracy", float("nan")), "exit": code,
    }


def spool_cost(workdir: Path, payload: bytes, trials: int) -> dict[str, float]:
    """Latency of one durable spool write per message, and per message in batches of 32."""
    sp = Spool(workdir / "cost.sqlite")
    single = []
    for i in range(trials):
        t = time.perf_counter()
        sp.put_many([Incoming(SAMPLE, f"one{i}", True, payload)])
        single.append(time.perf_counter() - t)
    batched = []
    for i in range(max(trials // 4, 10)):
        items = [Incoming(SAMPLE, f"b{i}-{k}", True, payload) for k in range(32)]
        t = time.perf_counter()
        sp.put_many(items)
        batched.append((time.perf_counter() - t) / 32)
    sp.close()
    a, b = np.array(single) * 1000, np.array(batched) * 1000
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "batched_p50": float(np.percentile(b, 50))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--formats", default="json,binary")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="the daemon's learner device: cpu, or cuda (the CUDA-graph step)")
    ap.add_argument("--spool-trials", type=int, default=200)
    ap.add_argument("--steady-rate", type=float, default=300.0, help="msg/s of the steady run (0: skip it)")
    ap.add_argument("--steady-seconds", type=float, default=10.0)
    ap.add_argument("--no-write", action="store_true", help="print only; do not touch BENCHMARKS.md")
    args = ap.parse_args()
    data = load_images("mnist")
    xs = (data.train_x[:args.messages].astype(np.float32) / 255.0)
    ys = data.train_y[:args.messages]
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-cl-bench-", dir=os.environ.get("EDGE_CL_BENCH_TMP")) as tmp:
        for fmt in args.formats.split(","):
            wd = Path(tmp) / fmt
            wd.mkdir()
            r = run_daemon_once(fmt, xs, ys, args.max_batch, wd, device=args.device)
            print(r)
            results.append(r)
        if args.steady_rate > 0:
            wd = Path(tmp) / "steady"
            wd.mkdir()
            k = min(len(xs), int(args.steady_rate * args.steady_seconds))
            r = run_daemon_once("binary", xs[:k], ys[:k], args.max_batch, wd, rate=args.steady_rate, device=args.device)
            print(r)
            results.append(r)
        cost = spool_cost(Path(tmp), encode_binary("m0", xs[0], int(ys[0])), args.spool_trials)
        print(cost)
    load = os.getloadavg()
    rows = [("| format | publishing | payload (B) | messages | end-to-end msg/s | publish s "
             "| receipt->prediction p50 / p99 (ms) | spool write (ms) / msgs per write | learn step (ms) / mean batch "
             "| prequential acc | exit |"),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r['format']} | {r['mode']} | {r['payload_bytes']} | {r['messages']} | **{r['rate']:.0f}** | "
                    f"{r['publish_seconds']:.1f} | {r['lat_p50']:.0f} / {r['lat_p99']:.0f} | "
                    f"{r['spool_write_ms']:.2f} / {r['msgs_per_write']:.1f} | {r['update_ms']:.2f} / {r['batch']:.1f} | "
                    f"{r['accuracy']:.3f} | {r['exit']} |")
    body = (f"Daemon end to end (Mosquitto MQTT 5 -> spool (SQLite WAL, synchronous=FULL) -> predict -> learn -> "
            f"prediction published, QoS 1 both ways), MLP 784-100-100-10, MAS, replay 10, max_batch "
            f"{args.max_batch}, one torch thread, learner on {args.device}; publisher, subscriber, broker and daemon "
            f"share the machine.\nMachine: {machine_line(args.device)}; load average at the end {load[0]:.1f} / "
            f"{load[1]:.1f}.\n\n" + "\n".join(rows) +
            f"\n\nSpool latency added per message (binary MNIST sample, {args.spool_trials} trials): one fsync'd "
            f"transaction per message p50 **{cost['p50']:.2f} ms**, p99 {cost['p99']:.2f} ms; batched 32 per "
            f"transaction (as the network thread does when messages arrive together) {cost['batched_p50']:.3f} ms "
            "per message.\n")
    print(body)
    if not args.no_write:
        cmd = "python benchmarks/daemon_throughput.py " + " ".join(sys.argv[1:])
        write_section("daemon-throughput" + ("" if args.device == "cpu" else f"-{args.device.split(':')[0]}"), body,
                      cmd.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
