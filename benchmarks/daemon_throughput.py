"""End-to-end throughput of the daemon and the latency the spool adds per message.

A Mosquitto broker (MQTT 5), the daemon as a subprocess (`edge-cl run`, MLP 784-100-100-10, MAS,
replay 10, one torch thread), a publisher pushing N MNIST digits as fast as the broker takes them
(QoS 1), and a subscriber counting predictions. Throughput = N / (first publish -> last prediction
received): broker -> spool (fsync'd) -> decode -> predict -> learn -> prediction published.
The spool's own cost is measured apart: one fsync'd transaction per message, and per message when
the network thread batches what arrived together (as the daemon does). Each run also reports where a
message's time goes, from the daemon's own per-stage counters (edge_cl_stage_seconds_total): decode, spool
write and send on the network thread; spool read, predict, learn and publish on the learning loop.

``--backlog N`` adds a drain run: N binary messages are spooled before the daemon starts (as after an
outage), the drain rate is N / (first -> last prediction received), then a steady stream at
``--steady-rate`` for ``--after-seconds`` measures receipt -> prediction once the backlog is gone.

    python benchmarks/daemon_throughput.py [--messages 4000] [--formats json,binary] [--max-batch 16]
        [--backlog-max-batch 64] [--backlog-max-chunk 64] [--latency-target-ms 50] [--backlog 50000] [--lag-high-water 10000]
        [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from edge_cl.bench.datasets import load_images
from edge_cl.daemon.codec import MessageCodec, encode_binary, encode_json
from edge_cl.daemon.demo import EmbeddedBroker, _free_port
from edge_cl.daemon.intake import Intake
from edge_cl.daemon.metrics import STAGES
from edge_cl.daemon.spool import SAMPLE, Incoming, Spool
from edge_cl.reporting import machine_line, write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.mqtt_wire: the lean load-generating clients
from tests.mqtt_wire import Publisher, Subscriber, publish_packets

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
backlog_max_batch = {backlog_max_batch}
backlog_max_chunk = {backlog_max_chunk}
latency_target_ms = {latency_target_ms}
[checkpoint]
dir = "ckpt"
every_steps = 100000
every_s = 30.0
[snapshot]
enabled = false
[spool]
path = "spool.sqlite"
lag_high_water = {lag_high_water}
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


def stage_breakdown(m: dict[str, float], messages: int) -> dict[str, float]:
    """Microseconds per message spent in each stage, from the daemon's counters."""
    return {st: 1e6 * m.get(f'edge_cl_stage_seconds_total{{stage="{st}"}}', 0.0) / max(messages, 1) for st in STAGES}


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads (Linux /proc): "loop", its main thread (the daemon's learning loop), and
    "others" (the network thread, and the metrics and snapshot threads, idle here); empty elsewhere."""
    out = {"loop": 0.0, "others": 0.0}
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out["loop" if task.name == str(pid) else "others"] += (int(fields[11]) + int(fields[12])) / \
                os.sysconf("SC_CLK_TCK")
    except OSError:
        return {}
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose msg/s is the median of ``runs`` (the lower middle of an even count), with every run's msg/s
    kept beside it ("runs"): the section shows the spread, not a lucky run."""
    ranked = sorted(runs, key=lambda r: r["rate"])
    out = dict(ranked[(len(ranked) - 1) // 2])
    out["runs"] = [r["rate"] for r in runs]
    return out


def prefill(workdir: Path, xs: np.ndarray, ys: np.ndarray) -> None:
    """Spool ``xs`` as received binary messages before the daemon starts (a backlog), as the network thread does."""
    intake = Intake(MessageCodec("binary", xs.shape[1], 10, 1 << 20))
    sp = Spool(workdir / "spool.sqlite", max_bytes=1 << 40)
    for start in range(0, len(xs), 1000):
        sp.put_many([intake.admit(encode_binary(f"b{i}", xs[i], int(ys[i])), False)
                     for i in range(start, min(start + 1000, len(xs)))])
    sp.close()


def run_daemon_once(fmt: str, xs: np.ndarray, ys: np.ndarray, opts: dict[str, Any], workdir: Path,
                    rate: float | None = None, backlog: int = 0) -> dict[str, Any]:
    """One daemon run; ``rate`` None publishes in one burst, else at ``rate`` messages per second. With
    ``backlog``, the first ``backlog`` rows are spooled before the daemon starts and the rest published at
    ``rate`` once they are all predicted."""
    broker = EmbeddedBroker(workdir, "mosquitto")
    broker.start()
    metrics_port = _free_port()
    cfg = workdir / "daemon.toml"
    cfg.write_text(CONFIG.format(port=broker.port, fmt=fmt, metrics_port=metrics_port, pred_qos=1, **opts))
    if backlog:
        prefill(workdir, xs[:backlog], ys[:backlog])
    n = len(xs)
    # Clients on raw sockets (tests/mqtt_wire.py): packets encoded before the clock starts, one write per block,
    # predictions parsed and acknowledged per socket read. paho's clients cost ~190 us a message, a core of the
    # two the daemon needs.
    sub = Subscriber(broker.port, ["bench/predictions", "bench/status"], client_id="bench-sub")
    proc = subprocess.Popen([sys.executable, "-m", "edge_cl.cli.main", "run", str(cfg)], cwd=workdir)
    try:
        if not sub.wait_for("bench/status", 1, 120) or sub.messages["bench/status"][-1] != b"online":
            raise RuntimeError("daemon did not come online")
        broker_pid = broker._proc.pid if broker._proc is not None else -1
        enc = (lambda i: encode_json(f"m{i}", xs[i], int(ys[i]))) if fmt == "json" else \
            (lambda i: encode_binary(f"m{i}", xs[i], int(ys[i])))
        payloads = [enc(i) for i in range(backlog, n)]
        packets = publish_packets("bench/samples", payloads)
        if backlog and not sub.wait_for("bench/predictions", backlog, 600):
            raise RuntimeError(f"the backlog did not drain: {sub.count('bench/predictions')} of {backlog} predictions")
        pub = Publisher(broker.port, client_id="bench-pub")
        cpu0 = {"daemon": proc_cpu(proc.pid), "broker": proc_cpu(broker_pid), **threads_cpu(proc.pid)}
        t0 = time.perf_counter()
        cpu0["clients"] = time.process_time()  # this process: publisher and subscriber (after the encoding)
        sent: list[float] = []
        if rate:
            sent = pub.send_paced(packets, rate)
        else:
            pub.send(packets)
        if not pub.wait_acked(len(packets), 120):
            raise RuntimeError(f"the broker acknowledged {pub.acked} of {len(packets)} publishes")
        t_pub = time.perf_counter() - t0
        if not sub.wait_for("bench/predictions", n, 300):
            raise RuntimeError(f"only {sub.count('bench/predictions')} of {n} predictions arrived")
        stamps = sub.stamps["bench/predictions"]
        elapsed = stamps[-1] - t0
        threads1 = threads_cpu(proc.pid)
        cpu = {"daemon": proc_cpu(proc.pid) - cpu0["daemon"], "broker": proc_cpu(broker_pid) - cpu0["broker"],
               "clients": time.process_time() - cpu0["clients"],
               "loop": threads1.get("loop", 0.0) - cpu0.get("loop", 0.0),
               "others": threads1.get("others", 0.0) - cpu0.get("others", 0.0)}
        time.sleep(0.6)  # the loop's gauges refresh every 0.5 s
        m = scrape(metrics_port)
        pub.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
        broker.stop()
    decode = msgspec.json.Decoder().decode
    got = [decode(p) for p in sub.messages["bench/predictions"]]
    # What a client sees in a paced run: its publish -> the prediction's arrival (ids m<i> were published at sent[i]).
    at = {g["id"]: t for g, t in zip(got, stamps)}
    e2e = np.array([1000.0 * (at[f"m{backlog + i}"] - t) for i, t in enumerate(sent) if f"m{backlog + i}" in at])
    lat = np.array([p["latency_ms"] for p in got[backlog:]])
    writes = m.get("edge_cl_spool_write_seconds_count", 0.0)
    steps = m.get("edge_cl_update_latency_seconds_count", 0.0)
    if backlog:  # the drain: first to last prediction of the spooled messages
        drain_s = stamps[backlog - 1] - stamps[0]
        mode, count, seconds, rate_out = f"backlog {backlog} drain, then {rate:.0f}/s", backlog, drain_s, \
            (backlog - 1) / drain_s
    else:
        mode, count, seconds, rate_out = f"steady {rate:.0f}/s" if rate else "burst", n, elapsed, n / elapsed
    return {
        "format": fmt, "mode": mode, "messages": count, "payload_bytes": int(np.mean([len(p) for p in payloads])),
        "seconds": seconds, "rate": rate_out, "publish_seconds": t_pub,
        "lat_p50": float(np.percentile(lat, 50)), "lat_p99": float(np.percentile(lat, 99)),
        "e2e": (float(np.percentile(e2e, 50)), float(np.percentile(e2e, 99))) if len(e2e) else None,
        "spool_write_ms": 1000 * m.get("edge_cl_spool_write_seconds_sum", 0.0) / max(writes, 1),
        "msgs_per_write": m.get('edge_cl_messages_received_total{kind="sample"}', 0.0) / max(writes, 1),
        "update_ms": 1000 * m.get("edge_cl_update_latency_seconds_sum", 0.0) / max(steps, 1),
        "batch": m.get("edge_cl_samples_learned_total", 0.0) / max(steps, 1),
        "learned": int(m.get("edge_cl_samples_learned_total", 0.0)),
        "accuracy": m.get("edge_cl_prequential_accuracy", float("nan")), "exit": code,
        "stages": stage_breakdown(m, n), "cpu_us": {k: 1e6 * v / max(n - backlog, 1) for k, v in cpu.items()}, "batch_limit": m.get("edge_cl_batch_limit", float("nan")),
        "skipped": int(sum(v for k, v in m.items() if k.startswith("edge_cl_samples_not_learned_total"))),
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
    ap.add_argument("--formats", default="json,binary", help="burst runs, comma-separated ('' for none)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--backlog-max-batch", type=int, default=64, help="learner.backlog_max_batch (= max-batch: fixed)")
    ap.add_argument("--backlog-max-chunk", type=int, default=64, help="learner.backlog_max_chunk")
    ap.add_argument("--latency-target-ms", type=float, default=50.0, help="learner.latency_target_ms")
    ap.add_argument("--lag-high-water", type=int, default=10_000,
                    help="spool.lag_high_water: above it the daemon learns a subsample (raise it to learn everything)")
    ap.add_argument("--device", default="cpu", help="the daemon's learner device: cpu, or cuda (the CUDA-graph step)")
    ap.add_argument("--spool-trials", type=int, default=200)
    ap.add_argument("--steady-rate", type=float, default=300.0, help="msg/s of the steady run (0: skip it)")
    ap.add_argument("--steady-seconds", type=float, default=10.0, help="length of the steady run (0: skip it)")
    ap.add_argument("--backlog", type=int, default=0, help="messages spooled before the daemon starts (0: no drain run)")
    ap.add_argument("--after-seconds", type=float, default=10.0, help="steady publishing after the drain, seconds")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each burst format and of the backlog drain; "
                    "the row shows the median run and the section lists every run's msg/s")
    ap.add_argument("--section", default="daemon-throughput",
                    help="BENCHMARKS.md section written (a drain run alone: e.g. daemon-throughput-backlog)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not touch BENCHMARKS.md")
    args = ap.parse_args()
    opts = {"max_batch": args.max_batch, "backlog_max_batch": args.backlog_max_batch,
            "backlog_max_chunk": args.backlog_max_chunk, "device": args.device,
            "latency_target_ms": args.latency_target_ms, "lag_high_water": args.lag_high_water}
    after = int(args.steady_rate * args.after_seconds) if args.backlog else 0
    if args.repeat < 1:
        ap.error(f"--repeat {args.repeat}: at least 1 run")
    if args.backlog and after < 1:
        ap.error("--backlog needs --steady-rate and --after-seconds > 0 (the latency once the backlog is gone)")
    data = load_images("mnist")
    total = max(args.messages, args.backlog + after)
    if total > len(data.train_x):
        ap.error(f"at most {len(data.train_x)} messages (MNIST's training set); asked for {total}")
    xs = (data.train_x[:total].astype(np.float32) / 255.0)
    ys = data.train_y[:total]
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-cl-bench-", dir=os.environ.get("EDGE_CL_BENCH_TMP")) as tmp:
        for fmt in [f for f in args.formats.split(",") if f]:
            runs = []
            for k in range(args.repeat):
                wd = Path(tmp) / f"{fmt}-{k}"
                wd.mkdir()
                runs.append(run_daemon_once(fmt, xs[:args.messages], ys[:args.messages], opts, wd))
                print(runs[-1])
            results.append(median_run(runs))
        if args.steady_rate > 0 and args.steady_seconds > 0:
            wd = Path(tmp) / "steady"
            wd.mkdir()
            k = min(len(xs), int(args.steady_rate * args.steady_seconds))
            r = run_daemon_once("binary", xs[:k], ys[:k], opts, wd, rate=args.steady_rate)
            print(r)
            results.append(r)
        if args.backlog:
            runs = []
            for j in range(args.repeat):
                wd = Path(tmp) / f"backlog-{j}"
                wd.mkdir()
                k = args.backlog + after
                runs.append(run_daemon_once("binary", xs[:k], ys[:k], opts, wd, rate=args.steady_rate,
                                            backlog=args.backlog))
                print(runs[-1])
            results.append(median_run(runs))
        cost = spool_cost(Path(tmp), encode_binary("m0", xs[0], int(ys[0])), args.spool_trials)
        print(cost)
    load = os.getloadavg()
    rows = [("| format | publishing | payload (B) | messages | end-to-end msg/s | publish s "
             "| receipt->prediction p50 / p99 (ms) | client publish->prediction p50 / p99 (ms) "
             "| spool write (ms) / msgs per write | learn step (ms) / mean batch "
             "| learned / not learned | prequential acc | exit |"),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        e2e = f"{r['e2e'][0]:.1f} / {r['e2e'][1]:.1f}" if r["e2e"] else "-"
        rows.append(f"| {r['format']} | {r['mode']} | {r['payload_bytes']} | {r['messages']} | **{r['rate']:.0f}** | "
                    f"{r['publish_seconds']:.1f} | {r['lat_p50']:.1f} / {r['lat_p99']:.1f} | {e2e} | "
                    f"{r['spool_write_ms']:.2f} / {r['msgs_per_write']:.1f} | {r['update_ms']:.2f} / {r['batch']:.1f} | "
                    f"{r['learned']} / {r['skipped']} | {r['accuracy']:.3f} | {r['exit']} |")
    repeated = [r for r in results if len(r.get("runs", [])) > 1]
    if repeated:
        rows.append("")
        rows.append(f"Each burst and backlog row is the median of {args.repeat} runs (--repeat); every run's msg/s, in "
                    "the order run: " + "; ".join(f"{r['format']} {r['mode']}: " + ", ".join(f"{v:.0f}" for v in
                                                                                             r["runs"])
                                                  for r in repeated) + ".")
    stage_rows = ["| format | publishing | " + " | ".join(STAGES) + " | network thread | learning loop "
                  "| CPU: daemon / broker / clients | CPU: daemon's learning loop / other threads |",
                  "|---|---|" + "---:|" * (len(STAGES) + 4)]
    network = ("decode", "spool_write", "send")
    for r in results:
        st = r["stages"]
        stage_rows.append(f"| {r['format']} | {r['mode']} | " + " | ".join(f"{st[k]:.1f}" for k in STAGES) +
                          f" | {sum(st[k] for k in network):.1f} | "
                          f"{sum(v for k, v in st.items() if k not in network):.1f} | "
                          + " / ".join(f"{r['cpu_us'][k]:.0f}" for k in ("daemon", "broker", "clients")) + " | "
                          + " / ".join(f"{r['cpu_us'][k]:.0f}" for k in ("loop", "others")) + " |")
    body = (f"Daemon end to end (Mosquitto MQTT 5 -> spool (SQLite WAL, synchronous=FULL) -> predict -> learn -> "
            f"prediction published, QoS 1 both ways), MLP 784-100-100-10, MAS, replay 10, max_batch "
            f"{args.max_batch}, backlog_max_batch {args.backlog_max_batch}, backlog_max_chunk {args.backlog_max_chunk}, "
            f"latency target "
            f"{args.latency_target_ms:g} ms, lag_high_water {args.lag_high_water}, one torch thread, learner on "
            f"{args.device}; publisher, subscriber, broker and daemon share the machine. In a backlog row, msg/s is the "
            "drain (first to last prediction of the spooled messages) and the latencies and CPU figures are those of "
            "the steady stream after it. Receipt->prediction is the daemon's own figure (the message's spool write "
            "to its prediction queued); client publish->prediction is what the publishing client sees, to the "
            "prediction's arrival at the subscriber (paced runs only).\n"
            f"Machine: {machine_line(args.device)}; load average at the end {load[0]:.1f} / {load[1]:.1f}.\n\n" +
            "\n".join(rows) +
            "\n\nWhere a message's time goes (microseconds per message, from the daemon's edge_cl_stage_seconds_total: "
            "wall time, so it includes waits for a core and for the other thread's hold on the GIL; the network thread "
            "and the learning loop run side by side). The CPU columns are CPU time per message from /proc (the daemon "
            "process, Mosquitto, and this benchmark's publisher and subscriber, raw-socket clients that encode every "
            "packet before the clock starts): with 2 cores, their sum over 2 is the least wall time a message can "
            "take. The daemon's CPU is split into its main thread (the learning loop) and the others (the network "
            "thread; the metrics and snapshot threads idle here): the two share one GIL:"
            "\n\n" + "\n".join(stage_rows) +
            f"\n\nSpool latency added per message (binary MNIST sample, {args.spool_trials} trials): one fsync'd "
            f"transaction per message p50 **{cost['p50']:.2f} ms**, p99 {cost['p99']:.2f} ms; batched 32 per "
            f"transaction (as the network thread does when messages arrive together) {cost['batched_p50']:.3f} ms "
            "per message.\n")
    print(body)
    if not args.no_write:
        cmd = "python benchmarks/daemon_throughput.py " + " ".join(sys.argv[1:])
        write_section(args.section + ("" if args.device == "cpu" else f"-{args.device.split(':')[0]}"), body,
                      cmd.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
