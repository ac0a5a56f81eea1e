"""Prediction latency for valid samples during a storm of labels for ids that never come (issue #26).

A Mosquitto broker (MQTT 5), the daemon in this process (MLP 8-16-3, one torch thread), a publisher sending
``--samples`` valid labelled samples at ``--rate`` per second and, from 0.3 s on, a second publisher sending
``--storm`` label messages for unknown ids as fast as the broker takes them (QoS 1). Latency = sample published
-> its prediction received by a subscriber; all four share the machine. Also reported: samples predicted,
learned, skipped by catch-up, predictions dropped, and the label join's evictions.

    python benchmarks/label_storm.py [--storm 10000] [--samples 300] [--rate 100] [--no-write] [--section NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_cl.config import load_config
from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.service import Daemon
from edge_cl.reporting import machine_line, write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.broker: the broker and config helpers
from tests.broker import Mosquitto, daemon_toml, find_mosquitto


def _client(port: int, client_id: str) -> Any:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    return c


def run(storm: int, n_samples: int, rate: float, workdir: Path) -> dict[str, Any]:
    """One storm; returns the latencies (ms) and the daemon's counters."""
    binary = find_mosquitto()
    if binary is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(binary, workdir / "broker").start()
    try:
        daemon = Daemon(load_config(daemon_toml(workdir / "d", broker.port)))
        stop = threading.Event()
        t = threading.Thread(target=lambda: daemon.run(stop), daemon=True)
        t.start()
        if not daemon.ready.wait(30):
            raise SystemExit(f"the daemon did not start: {daemon.exit_reason}")
        got: dict[str, float] = {}
        sent: dict[str, float] = {}
        ready = threading.Event()
        sub = _client(broker.port, "storm-subscriber")
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe([("t/predictions", 1)])
        sub.on_subscribe = lambda *a: ready.set()
        sub.on_message = lambda c, u, m: got.setdefault(json.loads(m.payload)["id"], time.monotonic())
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        ready.wait(10)

        def samples() -> None:
            c = _client(broker.port, "storm-samples")
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            rng = np.random.default_rng(0)
            for i in range(n_samples):
                sent[f"v{i}"] = time.monotonic()
                c.publish("t/samples", encode_json(f"v{i}", rng.normal(size=8).astype(np.float32), i % 3), qos=1)
                time.sleep(1.0 / rate)
            time.sleep(1.0)
            c.loop_stop()
            c.disconnect()

        storm_s: list[float] = []

        def flood() -> None:
            c = _client(broker.port, "storm-labels")
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            t0 = time.monotonic()
            infos = [c.publish("t/labels", json.dumps({"id": f"u{k}", "y": k % 3}).encode(), qos=1)
                     for k in range(storm)]
            for info in infos:
                info.wait_for_publish(120)
            storm_s.append(time.monotonic() - t0)
            c.loop_stop()
            c.disconnect()

        ts, tf = threading.Thread(target=samples), threading.Thread(target=flood)
        ts.start()
        time.sleep(0.3)
        tf.start()
        ts.join()
        tf.join()
        end = time.monotonic() + 60
        while len(got) < n_samples and time.monotonic() < end:
            time.sleep(0.1)
        lat = np.array([1000.0 * (got[k] - sent[k]) for k in sent if k in got])
        m = daemon.metrics
        out = {"storm": storm, "storm_publish_s": storm_s[0] if storm_s else None, "samples": n_samples,
               "predicted": len(lat), "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
               "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
               "max_ms": float(lat.max()) if len(lat) else None, "learned": daemon.progress.learned,
               "catch_up_skipped": m.value("edge_cl_samples_not_learned_total", reason="catch_up"),
               "outbound_dropped": m.value("edge_cl_outbound_dropped_total"),
               "early_labels_evicted": m.value("edge_cl_label_join_evicted_total", reason="early_labels")}
        stop.set()
        t.join(30)
        sub.loop_stop()
        sub.disconnect()
        return out
    finally:
        broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storm", type=int, default=10_000, help="label messages for unknown ids")
    ap.add_argument("--samples", type=int, default=300, help="valid labelled samples published meanwhile")
    ap.add_argument("--rate", type=float, default=100.0, help="valid samples per second")
    ap.add_argument("--no-write", action="store_true", help="print only; do not touch BENCHMARKS.md")
    ap.add_argument("--section", default="label-storm", help="BENCHMARKS.md section to write")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="edge-cl-storm-"))
    try:
        r = run(args.storm, args.samples, args.rate, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(json.dumps(r, indent=2))
    body = (f"Label storm: {r['storm']:,} label messages for unknown ids published as fast as Mosquitto takes them "
            f"({r['storm_publish_s']:.1f} s) while {r['samples']} valid labelled samples arrive at {args.rate:.0f}/s; "
            "daemon (MLP 8-16-3, one torch thread; labels in their own MQTT session, samples in another), broker, "
            "publishers and subscriber share the machine (daemon, publishers and subscriber also one Python process).\n"
            f"Machine: {machine_line('cpu')}; load average at the end {load[0]:.1f} / {load[1]:.1f}.\n\n"
            "| valid samples predicted | latency p50 / p99 / max (ms, published -> prediction received) | learned | "
            "skipped by catch-up | predictions dropped | early labels evicted (counted) |\n|---|---|---|---|---|---|\n"
            f"| {r['predicted']} of {r['samples']} | {r['p50_ms']:.0f} / **{r['p99_ms']:.0f}** / {r['max_ms']:.0f} | "
            f"{r['learned']} | {r['catch_up_skipped']:.0f} | {r['outbound_dropped']:.0f} | "
            f"{r['early_labels_evicted']:.0f} |\n")
    print(body)
    if not args.no_write:
        write_section(args.section, body, ("python benchmarks/label_storm.py " + " ".join(sys.argv[1:])).strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
