"""Prometheus metrics of one daemon, in its own CollectorRegistry (no process-wide globals)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge_cl.daemon.codec import BadReason
from edge_cl.fleet.stats import FAILURE_REASONS, FleetStats

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# Where a message's time goes, by stage. The network thread: decode (client bytes -> spool record), spool_write
# (the fsync'd transaction), send (paho publishing the outbox). The learning loop: spool_read (rows and their
# records read back), predict, learn (steps and label-free observation), publish (predictions encoded and queued).
STAGES = ("decode", "spool_write", "send", "spool_read", "predict", "learn", "publish")


class Metrics:
    """Every metric the daemon exports; ``serve`` starts the HTTP endpoint (owned by the daemon)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.messages_received = Counter("edge_cl_messages_received", "Messages received from the broker.",
                                         ["kind"], registry=r)
        self.checkpoint_failures = Counter("edge_cl_checkpoint_failures", "Checkpoint writes that failed (disk full, "
                                           "read-only ...); retried with backoff.", registry=r)
        self.duplicates = Counter("edge_cl_duplicates", "Redelivered messages ignored by the spool.", registry=r)
        self.samples_learned = Counter("edge_cl_samples_learned", "Samples learned (new, not replayed).", registry=r)
        self.samples_observed = Counter("edge_cl_samples_observed",
                                        "Unlabeled samples used for label-free importance.", registry=r)
        self.samples_skipped = Counter("edge_cl_samples_not_learned",
                                       "Labeled samples not learned, by reason.", ["reason"], registry=r)
        self.join_evicted = Counter(
            "edge_cl_label_join_evicted", "What the delayed-label join dropped, by the bound that pushed it out: "
            "'early_labels' (a label whose sample had not arrived), 'window_samples' and 'window_s' (an unlabeled "
            "sample whose label had not arrived; used for label-free importance, not learned).", ["reason"],
            registry=r)
        for reason in ("early_labels", "window_samples", "window_s"):
            self.join_evicted.labels(reason)
        self.predictions_published = Counter("edge_cl_predictions_published", "Predictions published.", registry=r)
        self.outbound_dropped = Counter("edge_cl_outbound_dropped", "Outbound messages dropped (queue full).",
                                        registry=r)
        self.bad_inputs = Counter("edge_cl_bad_inputs", "Rejected inputs, by reason.", ["reason"], registry=r)
        for reason in BadReason:
            self.bad_inputs.labels(reason.value)
        self.spool_dropped = Counter("edge_cl_spool_dropped", "Messages dropped by the spool's overflow policy, or "
                                     "QoS 0 ones beyond what memory holds while the spool refuses writes.",
                                     registry=r)
        self.spool_write_failures = Counter("edge_cl_spool_write_failures", "Spool writes refused (disk full, "
                                            "read-only ...); retried with backoff.", registry=r)
        self.messages_held = Gauge("edge_cl_messages_held", "Messages held in memory, unacknowledged, while the "
                                   "spool refuses writes.", registry=r)
        self.update_latency = Histogram("edge_cl_update_latency_seconds", "Wall time of one learn step.",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.prediction_latency = Histogram(
            "edge_cl_prediction_latency_seconds", "What a client sees: a sample's receipt by the daemon to its "
            "prediction queued for publishing (spool, the wait behind earlier messages and steps, the forward).",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.spool_latency = Histogram("edge_cl_spool_write_seconds", "Wall time of one durable spool write.",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.spool_depth = Gauge("edge_cl_spool_depth", "Messages spooled and not yet consumed (the lag).",
                                 registry=r)
        self.buffer_fill = Gauge("edge_cl_buffer_fill_ratio", "Replay buffer size / capacity.", registry=r)
        self.budget_used = Gauge("edge_cl_budget_used_bytes", "Bytes of learner state in the budget.", registry=r)
        self.budget_total = Gauge("edge_cl_budget_bytes", "The configured byte budget.", registry=r)
        self.consolidations = Counter("edge_cl_consolidations", "Importance consolidations.", registry=r)
        self.prequential_accuracy = Gauge("edge_cl_prequential_accuracy", "Running test-then-train accuracy.",
                                          registry=r)
        self.model_step = Gauge("edge_cl_model_step", "Learn steps taken by the model.", registry=r)
        self.checkpoints = Counter("edge_cl_checkpoints", "Checkpoints written.", registry=r)
        self.snapshots = Counter("edge_cl_snapshots", "ONNX snapshots, by outcome.", ["outcome"], registry=r)
        self.snapshot_version = Gauge("edge_cl_snapshot_version", "Model step of the latest ONNX snapshot.",
                                      registry=r)
        self.connected = Gauge("edge_cl_broker_connected", "1 while connected to the broker (every session: the "
                                                          "samples' and the labels' own).", registry=r)
        self.sessions_lost = Counter("edge_cl_broker_sessions_lost",
                                     "Reconnects where the broker no longer held our session (queued messages lost).",
                                     registry=r)
        self.reconnects = Counter("edge_cl_broker_reconnects", "Connection attempts after a loss.", registry=r)
        stage_seconds = Counter("edge_cl_stage_seconds", "Wall time spent per stage of the message path (decode, "
                                "spool_write and send on the network thread; spool_read, predict, learn and publish "
                                "on the learning loop).", ["stage"], registry=r)
        # Children looked up once: a stage is timed per chunk, and a label lookup per call would cost as much.
        self.stage = {name: stage_seconds.labels(name) for name in STAGES}
        self.batch_limit = Gauge("edge_cl_batch_limit", "New samples the next step may take (adaptive micro-batch).",
                                 registry=r)

    def watch_fleet(self, stats: FleetStats) -> None:
        """Export the fleet channel's counters (``edge_cl_fleet_*``), read from ``stats`` at each scrape."""
        self.registry.register(_FleetCollector(stats))

    def serve(self, host: str, port: int, status: Callable[[], dict[str, Any]] | None = None) -> tuple[Any, int]:
        """Start the HTTP endpoint (``/metrics``; with ``status`` also the status page at ``/`` and
        ``/status.json``); returns (server, bound port). The caller shuts the server down."""
        import threading
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import make_wsgi_app

        from edge_cl.daemon.status_page import make_app

        class _Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class _Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # access logs would flood the daemon's log
                pass

        _Server.address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server = make_server(host, port, make_app(make_wsgi_app(self.registry), status), _Server, _Quiet)
        threading.Thread(target=server.serve_forever, name="edge-cl-http", daemon=True).start()
        return server, int(server.server_port)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample by its exported name (for tests and summaries)."""
        got = self.registry.get_sample_value(name, labels or None)
        return 0.0 if got is None else float(got)


class _FleetCollector:
    """The fleet channel's counters as Prometheus metrics. Read at scrape time rather than mirrored into
    Counters: the channel's threads count, and the channel package stays free of prometheus_client."""

    def __init__(self, stats: FleetStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats.snapshot()
        yield CounterMetricFamily("edge_cl_fleet_rounds_joined", "Fleet rounds this device sent its weights to "
                                  "(weight reads by the Flower ClientApp answered).", value=s["rounds_joined"])
        yield CounterMetricFamily("edge_cl_fleet_rounds_skipped", "Fleet rounds this device answered without its "
                                  "weights: it had learned fewer than fleet.min_new_samples since its last merge.",
                                  value=s["rounds_skipped"])
        yield CounterMetricFamily("edge_cl_fleet_merges", "Global models merged into the learner.",
                                  value=s["merges"])
        yield GaugeMetricFamily("edge_cl_fleet_last_merge_timestamp_seconds", "Unix time of the last merge of a "
                                "global model (0: none yet).", value=s["last_merge_unix"])
        yield CounterMetricFamily("edge_cl_fleet_bytes_sent", "Bytes of weights handed to the ClientApp (sent "
                                  "up through Flower).", value=s["bytes_sent"])
        yield CounterMetricFamily("edge_cl_fleet_bytes_received", "Bytes of global models received from the "
                                  "ClientApp, merged or not.", value=s["bytes_received"])
        failures = CounterMetricFamily("edge_cl_fleet_merge_failures", "Global models not merged, by reason: "
                                       "refused (wrong architecture or shapes, NaN / Inf), timeout (the learning "
                                       "loop did not serve it within fleet.timeout_s), bad_body, internal.",
                                       labels=["reason"])
        for reason in FAILURE_REASONS:
            failures.add_metric([reason], s["failures"][reason])
        yield failures
