"""The daemon: wires config, spool, MQTT link, learner, metrics, checkpoints and snapshots; owns lifecycle.

Threads: the caller's thread runs the learning loop (it alone touches the learner), each MQTT session (samples;
labels, in a session of their own) owns its network thread, the snapshot worker exports ONNX, prometheus-client
serves HTTP. The learner consumes the spool in ``seq`` order; each checkpoint stores the last ``seq`` consumed, the unlabeled
samples still waiting and the early labels, so after a crash every message is learned exactly once
relative to the restored model. A disk that refuses writes stops neither thread: a failing checkpoint is
retried with backoff (edge_cl.daemon.retry), and while the spool refuses writes the learner predicts the
samples the link holds in memory (edge_cl.daemon.held) and learns them once they are spooled.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from edge_cl.config import Config
from edge_cl.daemon import checkpoints
from edge_cl.daemon.batching import BatchSizer, scaled_replay
from edge_cl.daemon.checkpoint_writer import CheckpointWriter
from edge_cl.daemon.checkpoints import CheckpointJob
from edge_cl.daemon.codec import Bad, BadReason, Label, MessageCodec, Sample, encode_binary
from edge_cl.daemon.held import PredictedEarly
from edge_cl.daemon.intake import DeadLetter, Intake, dead_letter
from edge_cl.daemon.labels import LabelJoin, Pending
from edge_cl.daemon.logsetup import RateLimiter
from edge_cl.daemon.metrics import Metrics
from edge_cl.daemon.mqtt_source import BrokerError, MqttLink, Role
from edge_cl.daemon.outbox import Outbox, Outgoing
from edge_cl.daemon.retry import WriteRetry
from edge_cl.daemon.snapshots import SnapshotWorker, find_publisher, make_job
from edge_cl.daemon.spool import LABEL, SAMPLE, Row, Spool, SpoolBusy, SpoolError
from edge_cl.daemon.status_page import StatusHistory, snapshot
from edge_cl.fleet import FleetChannel
from edge_cl.transaction import MethodError

log = logging.getLogger("edge_cl.daemon")

EXIT_OK = 0
EXIT_BROKER = 2
EXIT_ERROR = 3
CHECKPOINT_WAIT_S = 60.0  # longest wait at shutdown for a checkpoint write in progress
SEND_WAIT_S = 30.0  # longest wait for room in the outbound queue while connected (a stuck network thread)
_DIGEST_MOD = 1 << 64
LABEL_ROWS_PER_CHUNK = 512  # label rows a chunk may hold beyond its batch of samples (see chunk_of)
COMPACT_SLICE = 128  # spooled payloads freed per turn of the learning loop after a checkpoint


class Prediction(msgspec.Struct):
    """A published prediction: the JSON object ``{"id", "pred", "proba", "model_step", "latency_ms"}``."""

    id: str
    pred: int
    proba: list[float]
    model_step: int
    latency_ms: float


def id_digest(mid: str) -> int:
    """64-bit hash of a message id; the sum of these over learned ids fingerprints what was learned."""
    return int.from_bytes(hashlib.blake2b(mid.encode(), digest_size=8).digest(), "little")


def apply_process_settings(cfg: Config) -> None:
    """Process-wide settings the daemon owns (called by the CLI, never on import): torch's thread count."""
    if cfg.learner.threads:
        import torch

        torch.set_num_threads(cfg.learner.threads)


def settle_heap() -> None:
    """Put what startup allocated out of the garbage collector's sight (``gc.freeze``), called by the CLI once the
    daemon is built: the ~180,000 objects of torch, the model and the modules were scanned by every full collection,
    ~70 ms each, several times a burst (issue #27). Objects made later are collected as before."""
    gc.collect()
    gc.freeze()


def open_spool(cfg: Config, durable: bool = True) -> Spool:
    """A connection to the configured spool (each thread opens its own); ``durable=False`` for one that writes
    nothing but compactions (the learning loop's: see :class:`Spool`)."""
    sc = cfg.spool
    return Spool(sc.path, max_bytes=sc.max_bytes, drop_labeled=sc.overflow.value == "drop-oldest",
                 dedupe_window_s=sc.dedupe_window_s, durable=durable)


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the highest spool position in ``directory``, or None."""
    found = checkpoints.listing(directory)
    return found[-1] if found else None


@dataclass
class Progress:
    """What the learning loop has done; the part saved in checkpoints is plain JSON-able data."""

    position: int = 0           # last spool seq consumed
    learned: int = 0            # samples learned by this daemon's lineage (checkpointed)
    digest: int = 0             # sum of id_digest over learned ids, mod 2**64
    not_learned: dict[str, int] = field(default_factory=dict)

    def extra(self, join: LabelJoin) -> dict[str, Any]:
        return {"spool_position": self.position, "learned": self.learned, "learned_digest": str(self.digest),
                "pending": join.pending_seqs(), "early_labels": join.early_labels()}


class Daemon:
    """One edge_cl daemon; :meth:`run` blocks until ``stop`` is set (or the broker refuses us)."""

    def __init__(self, cfg: Config, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.codec = MessageCodec(cfg.input.format.value, cfg.input.flat_dim, cfg.input.num_classes,
                           cfg.input.max_payload_bytes)
        self.intake = Intake(self.codec)
        self.progress = Progress()
        early_dropped = self.metrics.join_evicted.labels("early_labels")
        self.join = LabelJoin(cfg.labels.window_samples, cfg.labels.window_s, cfg.labels.early_labels,
                              on_label_dropped=early_dropped.inc)
        self.learner: Any = None
        self.metrics_port: int | None = None
        self.ready = threading.Event()
        self.exit_reason = ""
        self._warn = RateLimiter(cfg.logging.warn_interval_s)
        self._rng = np.random.default_rng(cfg.learner.seed)
        self._method_errors: set[str] = set()  # causes of method failures already logged with their traceback
        self._catching_up = False
        self._predicted_early = PredictedEarly()  # held samples predicted before the spool took them
        self.hold_limit = 10_000  # messages held in memory while the spool refuses writes (beyond: at the broker)
        self._last_ckpt_path: Path | None = None
        self.checkpoint_retry = WriteRetry("checkpoint")
        # Checkpoints are serialised and written on the writer's thread (edge_cl.daemon.checkpoint_writer); how the
        # state reaches the disk is a seam the fault tests replace.
        self.checkpoint_writer: CheckpointWriter[CheckpointJob] = CheckpointWriter(self._write_in_background)
        self.save_state: Callable[[dict[str, Any], Path, int], object] = save_state
        self._link: MqttLink | None = None
        self._labels_link: MqttLink | None = None  # the labels' own session (when topics.labels is set)
        self._snap_step = -1
        self.outbox = Outbox(10_000, self.metrics)
        self.history = StatusHistory()
        self._page: dict[str, Any] = {}
        self.fleet: FleetChannel | None = None  # edge_cl.fleet: the loopback channel a Flower ClientApp uses
        lc = cfg.learner
        self.sizer = BatchSizer(lc.max_batch, lc.chunk_bound, lc.latency_target_ms / 1000.0)
        self._single_forward_said: str | None = ""  # the last reason logged for (not) predicting in the step
        self._json = msgspec.json.Encoder()  # predictions' JSON (compact; json.dumps cost ~7 us a message)
        self._compact_upto = 0  # spool rows at or below it are checkpointed: their payloads may be freed
        self._compacted = 0  # ... and are, up to here

    # ---- set-up ---------------------------------------------------------------------------------------
    def _new_learner(self) -> Any:
        from edge_cl.learner import OnlineLearner

        return OnlineLearner.from_config(self.cfg.build_model(), self.cfg.learner_config())

    def _restore(self, spool: Spool) -> None:
        from edge_cl.learner import OnlineLearner

        path = self._good_checkpoint()
        if path is None:
            self.learner = self._new_learner()
            log.info("no checkpoint in %s: starting a new model", self.cfg.checkpoint.dir)
            return
        try:
            self.learner = OnlineLearner.load(path, model=self.cfg.build_model(), device=self.cfg.learner.device)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(f"checkpoint {path} does not fit the configured model ({exc}); move it out of "
                             f"checkpoint.dir={str(self.cfg.checkpoint.dir)!r} to start afresh") from None
        extra = self.learner.extra
        self.progress.position = int(extra.get("spool_position", 0))
        self.progress.learned = int(extra.get("learned", 0))
        self.progress.digest = int(extra.get("learned_digest", "0"))
        self.join.restore_early({str(k): int(v) for k, v in dict(extra.get("early_labels", {})).items()})
        now = time.monotonic()
        for row in spool.read_seqs(int(s) for s in extra.get("pending", [])):
            s = self.intake.read(row)
            if isinstance(s, Sample):
                self.join.add_sample(Pending(row.seq, s.id, s.x, now))
        self._last_ckpt_path = path
        log.info("resumed from checkpoint %s: model step %d, spool position %d, %d samples learned, "
                 "%d unlabeled samples waiting", path, self.learner.step, self.progress.position,
                 self.progress.learned, len(self.join))

    def _log_user_modules(self) -> None:
        """Say where the user's modules come from: a same-named file elsewhere on the path would win silently."""
        from edge_cl import user_code

        for d in user_code.added_dirs():
            log.info("import path: appended %s (the config file's directory) for model.type and learner.plugins "
                     "modules", d)
        kind = str(self.cfg.model.get("type", ""))
        if ":" in kind:
            log.info("model %s from %s", kind, user_code.origin(kind.partition(":")[0]) or "an unknown location")
        for name in self.cfg.learner.plugins:
            log.info("plugin %s from %s", name, user_code.origin(name) or "an unknown location")

    def _good_checkpoint(self) -> Path | None:
        """The newest checkpoint that passes its integrity check; damaged newer ones are set aside, loudly."""
        directory = self.cfg.checkpoint.dir
        path, refused, verified = checkpoints.newest_good(directory)
        if refused and path is None:
            raise ValueError(
                f"checkpoint {refused[0].path} is refused: {refused[0].reason}; and no earlier checkpoint in "
                f"checkpoint.dir={str(directory)!r} verifies. Restore the file from a backup, or move the "
                "checkpoints out of that directory to start a new model (what was learned is then lost).")
        for bad in refused:
            aside = checkpoints.set_aside(bad.path)
            log.error("checkpoint %s refused: %s. Moved to %s; falling back to %s (the spool still holds the "
                      "messages after it: they are learned again).", bad.path, bad.reason, aside.name, path)
        if path is not None and not verified:
            log.warning("checkpoint %s has no integrity record (written by an older edge_cl): loaded unverified; "
                        "the next checkpoint will have one", path)
        return path

    # ---- main loop ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set; returns the process exit code."""
        cfg = self.cfg
        spool = open_spool(cfg, durable=False)
        server = None
        link: MqttLink | None = None
        labels_link: MqttLink | None = None
        worker: SnapshotWorker | None = None
        code = EXIT_OK
        consistent = False  # True once the loop ended between two chunks: safe to checkpoint
        try:
            self._log_user_modules()
            self._restore(spool)
            self.fleet = FleetChannel.from_config(cfg.fleet)
            if self.fleet is not None:
                self.metrics.watch_fleet(self.fleet.stats)
            self.metrics.budget_total.set(cfg.learner.budget_bytes)
            if cfg.metrics.enabled:
                try:
                    server, self.metrics_port = self.metrics.serve(
                        cfg.metrics.host, cfg.metrics.port, self.page_status if cfg.metrics.page_enabled else None)
                except OSError as exc:
                    raise ValueError(f"metrics.host={cfg.metrics.host!r} metrics.port={cfg.metrics.port}: cannot "
                                     f"listen ({exc.strerror}); pick a free port or set metrics.enabled = false"
                                     ) from None
                log.info("metrics on http://%s:%d/metrics%s", cfg.metrics.host, self.metrics_port,
                         f", status page on http://{cfg.metrics.host}:{self.metrics_port}/"
                         if cfg.metrics.page_enabled else "")
            worker = self._start_snapshots()
            spooled = threading.Condition()  # either session's spool write wakes the learning loop

            def make_link(role: Role) -> MqttLink:
                return MqttLink(cfg.broker, cfg.topics, self.codec, lambda: open_spool(cfg), self.metrics,
                                self.outbox, lambda: self.progress.position, seed=cfg.learner.seed,
                                warn_interval_s=cfg.logging.warn_interval_s, hold_limit=self.hold_limit, role=role,
                                spooled=spooled)

            if cfg.topics.labels:
                # Labels in a session of their own, so that a storm of them never queues ahead of a sample at
                # the broker. Started first: its subscription stands before the samples session drops the labels
                # subscription an older edge_cl left in it (no label published in between is lost).
                labels_link = self._labels_link = make_link(Role.LABELS)
                labels_link.start()
            link = self._link = make_link(Role.SAMPLES if cfg.topics.labels else Role.ALL)
            sessions = [each for each in (labels_link, link) if each is not None]
            # One gauge for both sessions, read when scraped: 1 only while every one is up.
            self.metrics.connected.set_function(lambda: float(all(each.connected for each in sessions)))
            link.start()
            self.ready.set()
            self._loop(stop, spool, link, worker)
            consistent = True
            fatal = self._fatal(link)
            if fatal is not None:
                code = EXIT_BROKER if isinstance(fatal, BrokerError) else EXIT_ERROR
                self.exit_reason = str(fatal)
                if isinstance(fatal, BrokerError):
                    log.error("stopping: %s", fatal)
                else:  # the link logged its cause (a full spool disk ...) when it stopped: once is enough
                    log.error("stopping: the MQTT link stopped (cause logged above)")
        except BrokerError as exc:
            self.exit_reason = str(exc)
            log.error("%s", exc)
            code = EXIT_BROKER
        except ValueError as exc:  # budget too small, checkpoint mismatch ...: the caller reports it
            self.exit_reason = str(exc)
            code = EXIT_ERROR
            raise
        except Exception as exc:
            # Logged here, before "stopped (exit code 3)": the log and the exit code tell one story.
            log.exception("the daemon stopped on an internal error")
            self.exit_reason = f"internal error: {type(exc).__name__}: {exc}"
            code = EXIT_ERROR
        finally:
            self.ready.set()
            for each in (link, labels_link):
                if each is not None:
                    each.stop_intake()
            if consistent:
                self._guard("checkpoint", lambda: self._final_checkpoint(spool))
            if worker is not None:
                fresh = self.learner is not None and self.learner.step and self.learner.step != self._snap_step
                final = make_job(self.learner, self.snapshot_input_shape()) if fresh else None
                self._guard("snapshot", lambda: worker.close(final, timeout=15.0))
            for each in (link, labels_link):
                if each is not None:
                    self._guard("disconnect", functools.partial(each.close, timeout=3.0))
            if server is not None:
                self._guard("metrics server", lambda: (server.shutdown(), server.server_close()))
            if self.fleet is not None:
                self._guard("fleet channel", self.fleet.close)
            spool.close()
            log.info("stopped (exit code %d)", code)
        return code

    @staticmethod
    def _guard(what: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - each shutdown step runs even when another failed
            log.error("shutdown step %r failed: %s", what, exc)

    def snapshot_input_shape(self) -> tuple[int, ...]:
        """The per-sample shape snapshots record: the model's own ``input_shape`` when it declares one (spec
        models), else the ``[input]`` table's, so a user's model needs no extra attribute to be exported."""
        declared = getattr(self.learner.model, "input_shape", None)
        return tuple(int(s) for s in declared) if declared is not None else self.cfg.input.sample_shape

    def _start_snapshots(self) -> SnapshotWorker | None:
        sc = self.cfg.snapshot
        if not sc.enabled:
            return None
        publish = find_publisher()
        if publish is None:
            log.warning("snapshots enabled but edge_cl.export.publish_snapshot is unavailable: no ONNX snapshots")
            return None
        return SnapshotWorker(functools.partial(publish, file_mode=sc.file_mode), sc.dir, sc.keep, self.metrics)

    def _loop(self, stop: threading.Event, spool: Spool, link: MqttLink, worker: SnapshotWorker | None) -> None:
        cfg = self.cfg
        last_ckpt_t = last_snap_t = last_stats_t = time.monotonic()
        last_ckpt_step = last_snap_step = self.learner.step
        ckpt_position = self.progress.position
        submitted = (last_ckpt_step, last_ckpt_t, ckpt_position)
        try:
            while not stop.is_set() and self._fatal(link) is None:
                if self.fleet is not None:  # between two steps: merges a global model, answers weight reads
                    self.fleet.apply_pending(self.learner)
                self._predict_held(link)
                # A slice of the payloads the checkpoints freed after every chunk: under a backlog too, or consumed
                # rows would fill spool.max_bytes and make room by dropping unconsumed ones.
                rows = self.next_chunk(spool)
                freed = self._compact_some(spool)
                if not rows and not freed:
                    with link.spooled:
                        link.spooled.wait(0.02)
                now = time.monotonic()
                if now - last_stats_t >= 0.5:
                    last_stats_t = now
                    self._expire(now)
                    self._refresh_gauges(spool)
                step = self.learner.step
                if self.checkpoint_writer.outcome():  # the last one submitted is written: the schedule restarts
                    last_ckpt_step, last_ckpt_t, ckpt_position = submitted
                # Copied here, written by the writer thread: a slow or full disk holds up neither predictions nor
                # learning. One at a time; a failed one is submitted again when the retry's backoff allows.
                if (step - last_ckpt_step >= cfg.checkpoint.every_steps or now - last_ckpt_t >= cfg.checkpoint.every_s) \
                        and self.progress.position != ckpt_position and self.checkpoint_retry.due() \
                        and not self.checkpoint_writer.busy \
                        and self.checkpoint_writer.submit(self._checkpoint_job()):
                    submitted = (step, now, self.progress.position)
                if worker is not None and step > last_snap_step and (
                        step - last_snap_step >= cfg.snapshot.every_steps or now - last_snap_t >= cfg.snapshot.every_s):
                    if worker.offer(make_job(self.learner, self.snapshot_input_shape())):
                        self._snap_step = step
                    last_snap_step, last_snap_t = step, now
        finally:  # the final checkpoint (run) comes after the one in progress, never beside it
            if not self.checkpoint_writer.close(timeout=CHECKPOINT_WAIT_S):
                log.error("a checkpoint write still runs after %.0fs (a stuck disk?); stopping without waiting for it",
                          CHECKPOINT_WAIT_S)

    # ---- one chunk of spooled messages ------------------------------------------------------------------
    def next_chunk(self, spool: Spool) -> int:
        """Read the next chunk (as many rows as the adaptive batch allows), predict and learn it; the number of
        rows read (0: the spool is drained)."""
        t0 = time.perf_counter()
        limit = self.sizer.limit
        rows, weight = read_chunk(spool, self.progress.position, limit)
        self.metrics.stage["spool_read"].inc(time.perf_counter() - t0)
        if not rows:
            return 0
        try:
            self._process(rows, weight)
        except Exception:  # one poison chunk must not crash-loop the daemon
            log.exception("internal error on spool rows %d..%d; skipping them", rows[0].seq, rows[-1].seq)
            self.metrics.samples_skipped.labels("internal_error").inc(len(rows))
            self.progress.position = rows[-1].seq
        self.sizer.done(weight, time.perf_counter() - t0)
        self.metrics.batch_limit.set(self.sizer.limit)
        return len(rows)

    def _process(self, rows: list[Row], weight: int | None = None) -> None:
        """Predict every sample of the chunk, then go through its rows in spool order: a labelled sample, or a
        label that completes a waiting one, joins the step (learned in the order their rows came, whatever the
        chunk's size), a dead letter goes out; then learn the step."""
        t0 = time.perf_counter()
        decoded = list(zip(rows, self.intake.read_many(rows)))
        samples: list[tuple[Row, Sample]] = [(row, got) for row, got in decoded if isinstance(got, Sample)]
        self.metrics.stage["spool_read"].inc(time.perf_counter() - t0)  # the records read back
        # Test-then-train: under a backlog, a labelled sample learned in this chunk's one step is predicted by that
        # step's own forward where it gives the same prediction (edge_cl.step_logits): one forward, not two.
        single = bool(samples) and self._single_forward(len(rows) if weight is None else weight)
        step = int(self.learner.step)
        proba: list[np.ndarray | None] = [None] * len(samples)
        # Samples predicted from memory while the spool refused writes: learned now, not predicted again.
        quiet = ({i for i, (_, s) in enumerate(samples) if self._predicted_early.consume(s.id)}
                 if len(self._predicted_early) else set())
        labelled = [s.y is not None for _, s in samples]
        deferred = [i for i, has_y in enumerate(labelled) if single and has_y and i not in quiet]
        self._predict_into(samples, [i for i, has_y in enumerate(labelled)
                                     if not (single and has_y) and i not in quiet], proba)
        if not single:
            self._publish(samples, proba, step)  # as soon as they are known: the step may take a while
        to_learn: list[tuple[str, np.ndarray, int]] = []
        late: dict[int, int] = {}  # row of the step -> sample whose prediction it gives
        use_step = single
        now = time.monotonic()
        i = -1
        for row, got in decoded:
            if isinstance(got, DeadLetter):
                self._dead_letter(got)
                continue
            if isinstance(got, Label):
                waiting = self.join.add_label(got.id, got.y)
                if waiting is not None:
                    to_learn.append((waiting.id, waiting.x, got.y))
                continue
            i += 1
            if got.y is not None:
                if use_step and i not in quiet:
                    late[len(to_learn)] = i
                to_learn.append((got.id, got.x, got.y))
                continue
            y, evicted = self.join.add_sample(Pending(row.seq, got.id, got.x, now))
            if y is not None:
                to_learn.append((got.id, got.x, y))
            if evicted:
                self.metrics.join_evicted.labels("window_samples").inc(len(evicted))
            if evicted and use_step:
                # A method's label-free work comes before the step: predict the labelled samples first, as before.
                self._predict_into(samples, deferred, proba)
                late, use_step = {}, False
            self._observe(evicted)
        logits: list[Any] = []
        try:
            if to_learn:
                logits = self._learn(to_learn, keep_logits=bool(late))
        finally:  # a step that raised was rolled back: the predictions still go out, from a forward of their own
            if single:
                self._finish_predictions(samples, late, logits, proba, step, quiet)
        self.progress.position = rows[-1].seq

    def _fatal(self, link: MqttLink) -> BaseException | None:
        """Why a session stopped (the samples session's reason first), or None while both run."""
        labels = self._labels_link
        return link.fatal if link.fatal is not None or labels is None else labels.fatal

    def _predict_held(self, link: MqttLink) -> None:
        """Predict the samples the link holds in memory while the spool refuses writes (each once)."""
        samples: list[tuple[Row, Sample]] = []
        for item, received in link.held.take_for_prediction():
            got = self.intake.read(Row(0, item.kind, item.msg_id, item.payload, received))
            if isinstance(got, Sample) and self._predicted_early.add(got.id):
                samples.append((Row(0, item.kind, item.msg_id, b"", received), got))
        if samples:
            self._predict(samples, early=True)

    def _predict(self, samples: list[tuple[Row, Sample]], early: bool = False) -> None:
        """Predict ``samples`` and publish their predictions (``early``: from memory, while the spool refuses)."""
        proba: list[np.ndarray | None] = [None] * len(samples)
        self._predict_into(samples, list(range(len(samples))), proba)
        self._publish(samples, proba, int(self.learner.step))

    def _single_forward(self, rows: int) -> bool:
        """True when this chunk's labelled samples are predicted by its learn step: a full chunk (messages are
        waiting, so throughput counts; a chunk that empties the spool predicts first and publishes before its step,
        which answers sooner), one step, no subsample, and the learner's step logits are its predictions. The
        reason they are not is logged once per change."""
        if self._catching_up or rows != self.sizer.limit:
            return False
        reason = self.learner.step_logits_differ()
        if reason != self._single_forward_said and self.learner.inputs_decided:
            self._single_forward_said = reason
            if reason is None:
                log.info("labelled samples are predicted by their learn step's own forward (one forward each)")
            else:
                log.info("labelled samples are predicted by a forward of their own before their step: %s", reason)
        return reason is None

    def _finish_predictions(self, samples: list[tuple[Row, Sample]], late: dict[int, int], logits: list[Any],
                            proba: list[np.ndarray | None], step: int, quiet: set[int]) -> None:
        """Fill in the deferred predictions from the step's logits (or a forward of their own where the step gave
        none: rolled back, so the model is the one before it) and publish the chunk's predictions in order (not
        those of ``quiet``: predicted from memory already)."""
        for j, i in late.items():
            if j < len(logits) and logits[j] is not None:
                proba[i] = logits[j]
        missing = [i for i, p in enumerate(proba) if p is None and i not in quiet]
        if missing:
            self._predict_into(samples, missing, proba)
        # A full chunk: more wait in the spool, so the network thread turns soon anyway (reading them); a wake-up
        # would cost this loop a system call and a GIL hand-off per chunk of a burst (issue #27).
        self._publish(samples, proba, step, wake=False)

    def _predict_into(self, samples: list[tuple[Row, Sample]], which: list[int], proba: list[np.ndarray | None]
                      ) -> None:
        """Predict ``samples[i]`` for each ``i`` in ``which`` into ``proba[i]`` (one forward for them all)."""
        todo = [i for i in which if proba[i] is None]
        if not todo:
            return
        t0 = time.perf_counter()
        got = self.learner.predict_proba(np.stack([samples[i][1].x for i in todo]))
        for k, i in enumerate(todo):
            proba[i] = got[k]
        self.metrics.stage["predict"].inc(time.perf_counter() - t0)

    def _publish(self, samples: list[tuple[Row, Sample]], proba: list[np.ndarray | None], step: int,
                 wake: bool = True) -> None:
        """Queue the prediction of each sample whose probabilities are known, in the chunk's order (``wake``: wake
        the network thread if it waits, as for any hand-over)."""
        t0 = time.perf_counter()
        known = [i for i, p in enumerate(proba) if p is not None]
        if not known:
            return
        # Rounded and argmax'd for the whole chunk at once, encoded by msgspec: per message, this was as costly
        # as the learn step itself at large batches (issue #27).
        table = np.stack([proba[i] for i in known]).astype(np.float64)
        preds = table.argmax(1).tolist()
        rounded = np.round(table, 6).tolist()
        now = time.time()
        qos = self.cfg.topics.predictions_qos
        topic = self.cfg.topics.predictions
        encode = self._json.encode
        observe = self.metrics.prediction_latency.observe
        out: list[Outgoing] = []
        for k, i in enumerate(known):
            row, s = samples[i]
            waited = now - row.received
            observe(max(waited, 0.0))
            out.append(Outgoing(topic, encode(Prediction(s.id, preds[k], rounded[k], step, round(waited * 1000.0, 3))),
                                qos))
        sent = self._send_many(out, wake=wake)
        self.metrics.predictions_published.inc(sent)
        self.metrics.stage["publish"].inc(time.perf_counter() - t0)

    def _learn(self, items: list[tuple[str, np.ndarray, int]], keep_logits: bool = False) -> list[Any]:
        """Learn ``items`` in steps of the current batch size; with ``keep_logits`` also the class probabilities
        each item's step computed before its update (None for an item whose step gave none)."""
        t0 = time.perf_counter()
        try:
            return self._learn_steps(items, keep_logits)
        finally:
            self.metrics.stage["learn"].inc(time.perf_counter() - t0)

    def _learn_steps(self, items: list[tuple[str, np.ndarray, int]], keep_logits: bool) -> list[Any]:
        probs: list[Any] = []
        if self._catching_up:
            keep = self._rng.random(len(items)) < self.cfg.spool.catchup_learn_fraction
            dropped = len(items) - int(keep.sum())
            if dropped:
                self.metrics.samples_skipped.labels("catch_up").inc(dropped)
            items = [it for it, k in zip(items, keep) if k]
        lc = self.cfg.learner
        mb = min(max(lc.max_batch, self.sizer.limit), lc.backlog_bound)  # a chunk may hold several steps
        for i in range(0, len(items), mb):
            part = items[i:i + mb]
            x = np.stack([it[1] for it in part])
            y = np.asarray([it[2] for it in part], dtype=np.int64)
            try:
                stats = self.learner.learn(x, y, replay=scaled_replay(lc.replay_batch, lc.max_batch, len(part)),
                                           keep_logits=keep_logits)
            except MethodError as exc:
                probs.extend([None] * len(part))
                self._not_learned(part, exc)
                continue
            if keep_logits:
                got = stats.logits
                probs.extend(list(torch_softmax(got)) if got is not None else [None] * len(part))
            self.metrics.update_latency.observe(stats.seconds)
            if stats.skipped:
                self.metrics.samples_skipped.labels("non_finite_loss").inc(len(part))
                self._warn_once("skip", "learn step skipped: non-finite loss on %d samples", len(part))
                continue
            self.metrics.samples_learned.inc(len(part))
            self.progress.learned += len(part)
            self.progress.digest = (self.progress.digest + sum(id_digest(it[0]) for it in part)) % _DIGEST_MOD
            if stats.consolidated:
                self.metrics.consolidations.inc()
            self.history.on_learn(self.progress.learned, stats.new_correct, len(part), stats.consolidated,
                                  seconds=stats.seconds)
        return probs

    def _not_learned(self, part: list[tuple[str, np.ndarray, int]], exc: MethodError) -> None:
        """A method raised on this batch: the learner rolled the step back, so its samples are booked as not
        learned (each one dead-lettered ``internal`` with the method's message) and the daemon goes on."""
        cause = f"{exc.method}.{exc.hook}:{type(exc.cause).__name__}"
        if cause not in self._method_errors:
            self._method_errors.add(cause)
            log.error("method %r raised in %s on a batch of %d samples; they are dead-lettered as 'internal' and "
                      "not learned (later failures of this cause are counted in "
                      "edge_cl_samples_skipped_total{reason=\"internal_error\"} only)", exc.method, exc.hook,
                      len(part), exc_info=exc.cause)
        self.metrics.samples_skipped.labels("internal_error").inc(len(part))
        detail = str(exc)[:200]
        for sample_id, x, y in part:
            dead = dead_letter(Bad(BadReason.INTERNAL, detail, sample_id), encode_binary(sample_id, x, y), "samples")
            self.metrics.bad_inputs.labels(dead.reason).inc()
            self._send(Outgoing(self.cfg.topics.dead_letter, dead.body, self.cfg.topics.predictions_qos))

    def _observe(self, evicted: list[Pending]) -> None:
        if not evicted:
            return
        t0 = time.perf_counter()
        try:
            used = self.learner.observe(np.stack([p.x for p in evicted]))
        except MethodError as exc:  # rolled back by the learner: these unlabelled samples are simply not used
            self._warn_once(f"observe:{exc.method}", "%s; %d unlabelled samples not used", exc, len(evicted))
            return
        finally:
            self.metrics.stage["learn"].inc(time.perf_counter() - t0)
        if used:
            self.metrics.samples_observed.inc(len(evicted))

    def _expire(self, now: float) -> None:
        expired = self.join.expire(now)
        if expired:
            self.metrics.join_evicted.labels("window_s").inc(len(expired))
        self._observe(expired)

    def _dead_letter(self, dead: DeadLetter) -> None:
        self.metrics.bad_inputs.labels(dead.reason).inc()
        self._warn_once(f"bad:{dead.reason}", "bad input (%s): %s", dead.reason, dead.detail)
        self._send(Outgoing(self.cfg.topics.dead_letter, dead.body, self.cfg.topics.predictions_qos))

    def _send(self, msg: Outgoing) -> bool:
        """Queue one message for the broker (see :meth:`_send_many`)."""
        return self._send_many([msg]) == 1

    def _send_many(self, msgs: list[Outgoing], wake: bool = True) -> int:
        """Queue messages for the broker, in order, in one hand-over; how many were queued. While connected, wait
        for room: the network thread drains the queue every few milliseconds, and dropping after a short wait lost
        predictions behind a storm of labels. While the broker is away, drop (counted) at once rather than stall
        learning on a full queue."""
        deadline = time.monotonic() + SEND_WAIT_S
        done = 0
        while self._link is not None and self._link.connected and self._link.fatal is None:
            done += self.outbox.put_many(msgs[done:], timeout=0.5, count_drop=False, wake=wake)
            if done == len(msgs):
                return done
            if time.monotonic() > deadline:
                self._warn_once("outbox", "outbound queue full for %.0fs while connected: %d message(s) to %s "
                                "dropped (edge_cl_outbound_dropped_total)", SEND_WAIT_S, len(msgs) - done,
                                msgs[done].topic)
                self.outbox.dropped(len(msgs) - done)
                return done
        return done + self.outbox.put_many(msgs[done:], timeout=0.0, wake=wake)

    def _warn_once(self, key: str, fmt: str, *args: Any) -> None:
        ok, held = self._warn.allow(key)
        if ok:
            log.warning(fmt + (f" ({held} similar suppressed)" if held else ""), *args)

    # ---- periodic work -----------------------------------------------------------------------------------
    def _refresh_gauges(self, spool: Spool) -> None:
        depth = spool.depth(self.progress.position)
        self.metrics.spool_depth.set(depth)
        was = self._catching_up
        # Samples only: a storm of labels costs the learner next to nothing and must not make it skip learning.
        behind = spool.depth(self.progress.position, SAMPLE) if depth > self.cfg.spool.lag_high_water else 0
        self._catching_up = behind > self.cfg.spool.lag_high_water
        if self._catching_up != was:
            log.warning("learning %s: %d samples behind (spool.lag_high_water=%d)",
                        "falls behind, learning a subsample" if self._catching_up else "caught up",
                        behind, self.cfg.spool.lag_high_water)
        lr = self.learner
        report = lr.memory_report()  # the learner's own accounting: each storage counted once
        self.metrics.buffer_fill.set(report["buffer_fill_ratio"])
        self.metrics.budget_used.set(report["used_bytes"])
        if lr.prequential_accuracy is not None:
            self.metrics.prequential_accuracy.set(lr.prequential_accuracy)
        self.metrics.model_step.set(lr.step)
        self._page = snapshot(lr, report, self.metrics.registry, depth)

    def _try_checkpoint(self, spool: Spool) -> bool:
        """Checkpoint now, on the calling thread; False when the disk refused (see :meth:`_try_write`)."""
        return self._try_write(self._checkpoint_job(), spool)

    def _try_write(self, job: CheckpointJob, spool: Spool | None) -> bool:
        """Write ``job``; a disk that refuses (full, read-only) is retried with backoff, not a reason to stop."""
        try:
            self._write_checkpoint(job, spool)
        except OSError as exc:
            self.metrics.checkpoint_failures.inc()
            self.checkpoint_retry.failed(job.path, exc)
            return False
        self.checkpoint_retry.succeeded(job.path)
        return True

    def _final_checkpoint(self, spool: Spool) -> None:
        if not self._try_checkpoint(spool):
            log.error("stopping without a final checkpoint: the next start resumes from %s and learns the spooled "
                      "messages after it again", self._last_ckpt_path or "a new model")

    def _checkpoint_path(self) -> Path:
        return self.cfg.checkpoint.dir / f"ckpt-{self.progress.position:012d}.pt"

    def _checkpoint_job(self) -> CheckpointJob:
        """A copy of the learner's state and the progress it stands for (learning loop, between two chunks)."""
        extra = self.progress.extra(self.join)
        self.learner.extra = dict(extra)
        pending = self.join.pending_seqs()
        return CheckpointJob(self._checkpoint_path(), checkpoints.copied(self.learner.state_dict()),
                             min([self.progress.position, *(s - 1 for s in pending)]), int(self.learner.step))

    def _checkpoint(self, spool: Spool, spread: bool = False) -> Path:
        """Checkpoint now, on the calling thread (tests; the final checkpoint at shutdown). With ``spread``, the
        spooled payloads it frees are left to the learning loop, a slice after each chunk (:meth:`_compact_some`)."""
        job = self._checkpoint_job()
        self._write_checkpoint(job, None if spread else spool)
        return job.path

    def _write_checkpoint(self, job: CheckpointJob, spool: Spool | None) -> None:
        """Write ``job`` atomically with its integrity record, drop old checkpoints and mark the spooled payloads
        now safe to free: freed at once on ``spool`` when given (the calling thread's connection), else by the
        learning loop a slice after each chunk (any thread: it touches no live state of the learner)."""
        cc = self.cfg.checkpoint
        self.save_state(job.state, job.path, cc.file_mode)
        checkpoints.write_record(job.path, job.safe)
        self.metrics.checkpoints.inc()
        self._last_ckpt_path = job.path
        # Free only what every kept checkpoint has consumed: a fallback to the oldest still finds its messages.
        self._compact_upto = max(self._compact_upto, checkpoints.prune(cc.dir, cc.keep))
        if spool is not None:
            self._compact_some(spool, limit=None)
        log.debug("checkpoint %s (step %d)", job.path, job.step)

    def _write_in_background(self, job: CheckpointJob) -> bool:
        """The checkpoint writer thread's work: ``job`` with the retry's bookkeeping. The payloads it frees are left
        to the learning loop's spool connection, a slice after each chunk: one 30 s checkpoint's rows freed at
        once would hold the spool's write lock from the network thread for ~0.3 s (issue #27)."""
        return self._try_write(job, None)

    def _compact_some(self, spool: Spool, limit: int | None = COMPACT_SLICE) -> bool:
        """Free up to ``limit`` spooled payloads the checkpoints no longer need (all with None); True when some
        were. A checkpoint's 30 s of messages freed at once held the loop ~0.3 s (a latency spike for everything
        arriving meanwhile, issue #27); a slice after each chunk bounds that wait."""
        if self._compact_upto <= self._compacted:
            return False
        try:
            # A slice never waits for the network thread's spool write (up to ~0.1 s in a burst, the learning
            # loop's longest stall, issue #27): it is tried again after the next chunk. The final one waits.
            freed = spool.compact(self._compact_upto, self.cfg.spool.dedupe_window, limit, wait=limit is None)
        except SpoolBusy:
            return False
        except SpoolError as exc:  # the checkpoint stands; the rows stay until a later checkpoint frees them
            self._warn_once("compact", "spool %s: cannot free the messages up to %d that the checkpoints cover (%s); "
                            "the next checkpoint tries again", spool.path, self._compact_upto, exc.__cause__ or exc)
            self._compacted = self._compact_upto
            return False
        if limit is None or freed < limit:
            self._compacted = self._compact_upto
        return freed > 0

    # ---- for the demo and tests ------------------------------------------------------------------------------
    def page_status(self) -> dict[str, Any]:
        """What the status page shows: the loop's last snapshot (refreshed every 0.5 s) and the history."""
        page = {**self._page, "history": self.history.to_json(), "latency_ms": self.history.latency_ms(),
                "client_id": self.cfg.broker.client_id,
                "connected": bool(self._link is not None and self._link.connected)}
        if self.fleet is not None:  # the page's fleet line: rounds joined, merges, the last one, failures
            page["fleet"] = self.fleet.stats.snapshot()
        return page

    def status(self) -> dict[str, Any]:
        """A few live numbers (read from another thread: values may be one step stale)."""
        lr = self.learner
        if lr is None:
            return {}
        m = self.metrics
        hist_sum = m.value("edge_cl_update_latency_seconds_sum")
        hist_n = m.value("edge_cl_update_latency_seconds_count")
        return {"step": lr.step, "samples_learned": self.progress.learned,
                "prequential_accuracy": lr.prequential_accuracy, "consolidations": lr.consolidations,
                "buffer_fill": m.value("edge_cl_buffer_fill_ratio"), "budget_used": m.value("edge_cl_budget_used_bytes"),
                "budget": self.cfg.learner.budget_bytes, "spool_depth": m.value("edge_cl_spool_depth"),
                "update_ms": 1000.0 * hist_sum / hist_n if hist_n else None,
                "received": m.value("edge_cl_messages_received_total", kind="sample"),
                "predictions": m.value("edge_cl_predictions_published_total"),
                "bad_inputs": sum(m.value("edge_cl_bad_inputs_total", reason=r.value) for r in _reasons())}


def save_state(state: dict[str, Any], path: Path, mode: int) -> None:
    """Write a learner state atomically with permissions ``mode`` (torch imported here, not with the module)."""
    from edge_cl.state_file import atomic_save

    atomic_save(state, path, mode)


def chunk_of(rows: list[Row], limit: int) -> tuple[list[Row], int]:
    """The leading rows up to and including the ``limit``-th that is not a label, and how many of those there are.

    Label rows do not count against the batch: one costs the learner a lookup in the label join, and counted like
    samples, a storm of labels for unknown ids made the loop crawl through them ``max_batch`` at a time while the
    samples spooled after them waited (issue #26). A label that completes a waiting sample still joins the step,
    and :meth:`Daemon._learn` splits a step larger than the batch.
    """
    weight = 0
    for k, row in enumerate(rows):
        if row.kind != LABEL:
            weight += 1
            if weight == limit:
                return rows[:k + 1], weight
    return rows, weight


def read_chunk(spool: Spool, position: int, limit: int) -> tuple[list[Row], int]:
    """``chunk_of(spool.read_after(position, limit + LABEL_ROWS_PER_CHUNK), limit)``, reading no row past the chunk.

    Reading the whole ``limit + LABEL_ROWS_PER_CHUNK`` rows at once fetched and built ~9 rows for each one a chunk
    kept in a burst of samples: the learning loop's largest cost per message (issue #27). Here rows are read a
    sample deficit at a time, so a stream without labels takes one query of ``limit`` rows.
    """
    total = limit + LABEL_ROWS_PER_CHUNK
    rows: list[Row] = []
    weight = 0
    while len(rows) < total:
        want = min(limit - weight, total - len(rows))
        got = spool.read_after(rows[-1].seq if rows else position, want)
        for row in got:
            rows.append(row)
            if row.kind != LABEL:
                weight += 1
        if weight >= limit or len(got) < want:
            break
    return rows, weight


def torch_softmax(logits: Any) -> np.ndarray:
    """Class probabilities (float32 numpy) from a torch tensor of logits, as ``predict_proba`` computes them."""
    import torch

    return torch.softmax(logits, dim=1).float().cpu().numpy()


def _reasons() -> list[Any]:
    from edge_cl.daemon.codec import BadReason

    return list(BadReason)
