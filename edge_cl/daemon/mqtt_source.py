"""The one adapter around paho-mqtt: intake into the spool with manual acks, and all publishing.

paho is not fully thread-safe, so exactly one thread (the link's network thread) ever calls into the
client: it reads packets, writes arrived messages to the spool in one fsync'd transaction, acknowledges
them only then, and drains the outbound queue that the learner fills. paho errors become
:class:`BrokerError` here. A spool that refuses writes (disk full, read-only) does not stop the link: what
arrives is held in memory unacknowledged (edge_cl.daemon.held) and written, then acknowledged, once the
disk takes writes again.

Labels come in a session of their own (:class:`Role`): the broker delivers each session's messages in order and
acknowledged one inflight window at a time, so in one shared session a sample published during a storm of
labels waited until every label queued before it was spooled and acknowledged (p99 above 1 s for a
10,000-message storm, issue #26). With two sessions a label backlog waits at the broker, in its own queue,
while samples keep arriving on theirs. The labels session's client id is ``<broker.client_id>-labels``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from edge_cl.config import BrokerConfig, BrokerProtocol, TopicsConfig
from edge_cl.daemon.codec import MessageCodec
from edge_cl.daemon.duplicates import DuplicateWarning
from edge_cl.daemon.held import Arrived, HeldMessages
from edge_cl.daemon.intake import Intake
from edge_cl.daemon.logsetup import RateLimiter
from edge_cl.daemon.metrics import Metrics
from edge_cl.daemon.outbox import Outbox
from edge_cl.daemon.retry import WriteRetry
from edge_cl.daemon.socket_batch import BatchedSocket
from edge_cl.daemon.spool import LABEL, Incoming, Spool, SpoolError

log = logging.getLogger("edge_cl.daemon.mqtt")

# CONNACK reasons that retrying cannot fix: bad credentials, refused id, unsupported protocol, banned.
_FATAL_REASONS = {0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C}
# QoS 1/2 publishes sent and not yet acknowledged, at most. The link keeps this window itself and paho's own limit
# is off: paho scans every message it holds on each PUBACK while it has a limit, quadratic in a burst.
PUBLISH_WINDOW = 1000


class Role(Enum):
    """Which topics one MQTT session reads, and whether it is the one that publishes."""

    ALL = "all"          # samples and labels in one session (no labels topic, or a link on its own in tests)
    SAMPLES = "samples"  # samples; publishes predictions, dead letters and the status; labels have a session apart
    LABELS = "labels"    # labels only, client id "<client_id>-labels"; publishes nothing


LABELS_CLIENT_SUFFIX = "-labels"


class BrokerError(RuntimeError):
    """The broker refused us in a way that retrying will not fix (credentials, TLS, protocol)."""


class MqttLink:
    """Owns the paho client and its network thread (started by :meth:`start`, ended by :meth:`close`)."""

    def __init__(self, broker: BrokerConfig, topics: TopicsConfig, codec: MessageCodec, open_spool: Callable[[], Spool],
                 metrics: Metrics, outbox: Outbox, consumed: Callable[[], int], *, seed: int = 0,
                 warn_interval_s: float = 10.0, hold_limit: int = 10_000,
                 spool_retry: WriteRetry | None = None, role: Role = Role.ALL,
                 spooled: threading.Condition | None = None) -> None:
        self.role = role
        self.client_id = broker.client_id + (LABELS_CLIENT_SUFFIX if role == Role.LABELS else "")
        # The spool meta key recording that the broker holds this session (one per session).
        self._session_key = "mqtt_session" + ("_labels" if role == Role.LABELS else "")
        self.broker = broker
        self.topics = topics
        self.codec = codec
        self.intake = Intake(codec)
        self._open_spool = open_spool
        self.metrics = metrics
        self.outbox = outbox
        # Wakes the network thread's wait when the learner queues predictions (one byte per hand-over), so they go
        # out at once and not at the end of its 5 ms wait; opened and closed by the thread (_run).
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._waiting = False  # in select(): only then is a wake-up worth its system call (and GIL hand-off)
        self._consumed = consumed
        self._duplicates = DuplicateWarning(warn_interval_s)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._intake = threading.Event()
        self._intake.set()
        self._first_result = threading.Event()
        self._sub_mid = -1  # message id of the subscription sent on the last connect
        self._thread: threading.Thread | None = None
        self._raw: list[tuple[bytes | BaseException, bool, int, int]] = []  # read: (payload, is_label, mid, qos)
        self._arrived: list[Arrived] = []  # decoded, waiting for the spool write
        self.held = HeldMessages(hold_limit)  # what the spool refused, unacknowledged until it takes them
        self.spool_retry = spool_retry or WriteRetry(
            "spool", min_s=0.5, max_s=10.0,
            meanwhile="New messages are held in memory, unacknowledged (the broker keeps what exceeds its in-flight "
                      "window), and their samples are predicted by the model in memory")
        self._redeliver = False  # reconnect once the spool works: the broker resends what was not held
        self._lost_warning = RateLimiter(warn_interval_s)
        self._lost_since_warning = 0
        self._decode_s = 0.0  # decode time of the arrived messages, added to the stage counter at their flush
        # Counter children looked up once, not per message.
        self._received_samples = metrics.messages_received.labels("sample")
        self._received_labels = metrics.messages_received.labels("label")
        self._connected = False
        self._session_known = False  # a session for our client id was created (remembered in the spool)
        self._password: str | None = None
        self.fatal: BaseException | None = None
        # Notified after each spool write (wakes the learner); shared by the daemon's two sessions.
        self.spooled = spooled or threading.Condition()
        self._client: Any = None
        self._close_deadline = 0.0
        self._spool: Spool | None = None

    # ---- lifecycle (called from the daemon's main thread) -------------------------------------------
    def start(self) -> None:
        """Start the network thread and wait for the first connection; raise BrokerError if refused.

        The password is read here, in the caller's thread, so that a missing source is a ConfigError
        (exit 3, like every configuration problem) and not a refusal by the broker.
        """
        self._password = self.broker.password()
        name = "edge-cl-mqtt" + ("-labels" if self.role == Role.LABELS else "")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._first_result.wait(self.broker.connect_timeout_s):
            log.warning("no connection to %s:%d within %.0fs; still retrying in the background",
                        self.broker.host, self.broker.port, self.broker.connect_timeout_s)
        if self.fatal is not None:
            self.close(timeout=2.0)
            if isinstance(self.fatal, BrokerError):
                raise self.fatal
            raise RuntimeError(f"MQTT network thread failed: {self.fatal!r}") from self.fatal

    @property
    def connected(self) -> bool:
        """True while the broker session is up."""
        return self._connected

    def stop_intake(self) -> None:
        """Stop accepting messages: later arrivals are neither spooled nor acked, so the broker keeps them."""
        self._intake.clear()

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is queued (up to ``timeout``), mark the status offline, disconnect, join the thread."""
        self._close_deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 2.0)

    # ---- network thread -----------------------------------------------------------------------------
    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        v5 = self.broker.protocol == BrokerProtocol.V5
        kwargs: dict[str, Any] = {}
        if not v5:
            kwargs["clean_session"] = False  # 3.1.1: the persistent session
        from edge_cl.daemon.paho_lean import client_class

        client = client_class()(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=True, **kwargs)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(0)  # unlimited in paho; the link sends at most PUBLISH_WINDOW (_drain_outbox)
        if self.broker.tls:
            client.tls_set(ca_certs=str(self.broker.ca_file),
                           certfile=str(self.broker.cert_file) if self.broker.cert_file else None,
                           keyfile=str(self.broker.key_file) if self.broker.key_file else None)
            client.tls_insecure_set(self.broker.tls_insecure)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self._password)
        if self.topics.status and self._publishes:
            client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        if hasattr(client, "on_publishes"):
            client.on_publishes = self._on_publishes
        return client

    def _run(self) -> None:
        spool: Spool | None = None
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake_r, self._wake_w = wake_r, wake_w
        if self._publishes:  # one session publishes: the one the learner's hand-overs wake
            self.outbox.on_put(self._wake_network)
        try:
            spool = self._spool = self._open_spool()
            self._session_known = spool.get_meta(self._session_key) == self.client_id
            self._client = self._make_client()
            self._serve(spool)
        except BaseException as exc:  # noqa: BLE001 - the thread must report, never die silently
            if self.fatal is None:
                self.fatal = exc
            log.error("MQTT link stopped: %s", exc)
        finally:
            self._first_result.set()
            self._connected = False
            self.metrics.connected.set(0)
            with self.spooled:
                self.spooled.notify_all()
            if spool is not None:
                spool.close()
            self.outbox.on_put(None)
            wake_r.close()
            wake_w.close()

    def _serve(self, spool: Spool) -> None:
        import paho.mqtt.client as mqtt

        delay = self.broker.reconnect_min_s
        last_limit_check = 0.0
        sock_up = False
        while not self._stop.is_set() and self.fatal is None:
            if not sock_up:
                try:
                    self._connect()
                    sock_up = True
                except (OSError, ssl.SSLError) as exc:
                    if isinstance(exc, ssl.SSLCertVerificationError):
                        self.fatal = BrokerError(f"TLS: cannot verify the broker certificate "
                                                 f"(broker.ca_file={str(self.broker.ca_file)!r}): {exc}")
                        break
                    log.warning("cannot connect to %s:%d (%s); retrying in %.1fs",
                                self.broker.host, self.broker.port, exc, delay)
                    self.metrics.reconnects.inc()
                    self._stop.wait(delay * (0.5 + self._rng.random()))
                    delay = min(delay * 2, self.broker.reconnect_max_s)
                    continue
            sock = self._client.socket()
            with sock.batch() if isinstance(sock, BatchedSocket) else contextlib.nullcontext():
                if isinstance(sock, BatchedSocket) and sock.unsent:
                    sock.flush()  # the socket was full at the end of the last turn
                rc = self._turn(spool)
            if self._connected:
                delay = self.broker.reconnect_min_s
            now = time.monotonic()
            if now - last_limit_check > 1.0 and not self.spool_retry.failing and self._publishes:
                last_limit_check = now
                self._enforce_limit(spool)
            if self._redeliver and rc == mqtt.MQTT_ERR_SUCCESS:
                log.warning("reconnecting so that the broker sends again the %d message(s) that arrived while the "
                            "spool refused writes and did not fit in memory", self.held.refused_acked)
                self._client.disconnect()
                rc = mqtt.MQTT_ERR_NO_CONN
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if self.fatal is not None:
                    break
                self._raw.clear()  # unacked: the broker redelivers them in the resumed session
                self._arrived.clear()
                self.held.connection_lost()
                self._redeliver = False
                self.held.refused_acked = 0
                sock_up = False
                log.warning("connection to the broker lost (%s); reconnecting", mqtt.error_string(rc))
        self._flush(spool, final=True)
        self._report_held(spool)
        self._shutdown()

    def _turn(self, spool: Spool) -> int:
        """One turn of the network loop: read what arrived, spool and acknowledge it, publish what the learner
        queued; paho's return code."""
        rc = self._read(0.005)
        self._flush(spool)
        if self._connected:
            self._drain_outbox()
        return rc

    def _read(self, timeout: float) -> int:
        """Wait up to ``timeout`` for the broker or for predictions to publish, then read what the broker sent (up
        to ~256 messages): paho's loop() without paho's wake-up socket pair, which costs a system call per packet
        sent and wakes nobody here (this thread alone calls the client). The link's own pair is written by the
        learner only while this thread waits (_wake_network)."""
        import paho.mqtt.client as mqtt

        client = self._client
        sock = client.socket()
        if not isinstance(sock, BatchedSocket):
            return int(client.loop(timeout))
        self._waiting = True  # before looking at the outbox: a hand-over after the look wakes the wait
        # Only the publishing session looks at the outbox: the labels session, which shares it, spun on a busy
        # outbox without waiting and took a sixth of the GIL from the two threads that work in a burst.
        if sock.pending() or (self._publishes and len(self.outbox) and len(client._out_messages) < PUBLISH_WINDOW):
            timeout = 0.0
            self._waiting = False  # a look, not a wait: a hand-over now needs no wake-up (a system call and a GIL
            # hand-off on the learning loop's side, once a chunk in a burst)
        try:
            readable, writable, _ = select.select([sock] if self._wake_r is None else [sock, self._wake_r],
                                                  [sock] if client.want_write() or sock.unsent else [], [], timeout)
        except (OSError, ValueError, TypeError):  # closed under us: as paho's loop() reports it
            return int(mqtt.MQTT_ERR_CONN_LOST)
        finally:
            self._waiting = False
        if self._wake_r is not None and self._wake_r in readable:
            try:
                self._wake_r.recv(4096)
            except OSError:
                pass
        rc = 0
        if writable:
            sock.flush()
            rc = int(client.loop_write())
        if not rc and (sock in readable or sock.pending()):
            for _ in range(512):
                rc = int(client.loop_read())
                if rc or len(self._raw) >= 256 or client.socket() is not sock or not sock.pending():
                    break
        if not rc and client.socket() is sock:
            rc = int(client.loop_misc())
        return rc

    def _enforce_limit(self, spool: Spool) -> None:
        try:
            dropped = spool.enforce_limit(self._consumed())
        except SpoolError as exc:
            self._spool_failed(spool, exc)
            return
        if dropped:
            self.metrics.spool_dropped.inc(dropped)
            log.warning("spool over max_bytes: dropped %d unconsumed messages", dropped)

    def _connect(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self.broker.protocol == BrokerProtocol.V5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.broker.session_expiry_s
            props.ReceiveMaximum = 1000
            # Clean start off (the default) even on the first connect: the broker creates the session when
            # it has none. Mosquitto does not persist a session that began with clean start until the client
            # reconnects without it, so a broker restart in the daemon's first session lost its queue.
            self._client.connect(self.broker.host, self.broker.port, self.broker.keepalive,
                                 clean_start=self.broker.clean_start and not self._session_known,
                                 properties=props)
        else:
            self._client.connect(self.broker.host, self.broker.port, self.broker.keepalive)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            msg = f"broker {self.broker.host}:{self.broker.port} refused the connection: {reason}"
            if int(reason.value) in _FATAL_REASONS:
                self.fatal = BrokerError(msg + " (check broker.username / password source / client_id)")
                self._first_result.set()
            else:
                log.warning("%s; will retry", msg)
            return
        self._connected = True
        self.metrics.connected.set(1)
        resumed = bool(getattr(flags, "session_present", False))
        self._report_session(resumed, properties)
        if not self._session_known and self._spool is not None:
            # From now on the broker holds our session: never clean-start it again, even after a restart.
            try:
                self._spool.set_meta(self._session_key, self.client_id)
            except sqlite3.Error as exc:  # a full or read-only spool disk: known to this process all the same
                log.warning("spool %s: cannot record that the broker holds our MQTT session (%s)", self._spool.path,
                            exc)
            self._session_known = True
        wanted = {Role.ALL: [self.topics.samples, self.topics.labels], Role.SAMPLES: [self.topics.samples],
                  Role.LABELS: [self.topics.labels]}[self.role]
        subs = [(t, self.topics.qos) for t in wanted if t]
        if self.role == Role.SAMPLES and self.topics.labels:
            # A session kept from an older edge_cl (one session for both topics) still holds the labels
            # subscription: without this the broker would send every label twice, once to each session.
            client.unsubscribe(self.topics.labels)
        # Renewed on every connect. "Online" (and start() returning) waits for the broker's SUBACK: before it, a
        # fresh session has no subscription and the broker drops what is published to it.
        self._sub_mid = client.subscribe(subs)[1]

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if mid != self._sub_mid:
            return
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.error("the broker refused the subscription to %s (client_id=%r): %s (check the broker's ACL for this "
                      "user and client id)", self.topics.labels if self.role == Role.LABELS else self.topics.samples,
                      self.client_id, refused)
        if self.topics.status and self._publishes:
            client.publish(self.topics.status, b"online", qos=1, retain=True)
        self._first_result.set()

    def _report_session(self, resumed: bool, properties: Any) -> None:
        b = self.broker
        where = f"{b.host}:{b.port} (MQTT {b.protocol.value}, client_id={self.client_id!r})"
        if resumed:
            log.info("connected to %s: session resumed", where)
        elif not self._session_known:
            log.info("connected to %s: new session (first connection with this spool)", where)
        else:
            self.metrics.sessions_lost.inc()
            log.warning("connected to %s, but the broker no longer holds our session: messages published "
                        "while the daemon was disconnected were dropped by the broker and are lost. The "
                        "session expired (broker.session_expiry_s=%d), the broker restarted without "
                        "persistence (Mosquitto: persistence true), or another client used this client_id.",
                        where, b.session_expiry_s)
        granted = getattr(properties, "SessionExpiryInterval", None)
        if b.protocol == BrokerProtocol.V5 and isinstance(granted, int) and granted < b.session_expiry_s:
            log.warning("the broker keeps our session only %ds after a disconnect (broker.session_expiry_s=%d "
                        "asked for more; Mosquitto: max_session_expiry_interval): a longer outage loses "
                        "what was queued", granted, b.session_expiry_s)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected = False
        self.metrics.connected.set(0)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # Kept raw: the turn's messages are decoded together before their spool write (_admit_arrivals). An
        # exception here would leave paho's loop() and stop the daemon before the ack, and the broker would
        # redeliver the same message to every restart: whatever happens, the message gets a row.
        if not self._intake.is_set():
            return  # not acked: stays with the broker
        is_label = self.role == Role.LABELS or (bool(self.topics.labels) and msg.topic == self.topics.labels)
        try:
            payload: bytes | BaseException = bytes(msg.payload)
        except Exception as exc:  # noqa: BLE001 - becomes an 'internal' dead letter
            payload = exc
        self._raw.append((payload, is_label, msg.mid, msg.qos))

    def _on_publishes(self, msgs: list[tuple[str, bytes, int, bool, bool]]) -> None:
        """:meth:`_on_message` for a run of plain QoS 1 publishes (the lean client's ``on_publishes``)."""
        if not self._intake.is_set():
            return  # not acked: stays with the broker
        labels = self.topics.labels
        if self.role == Role.LABELS:
            self._raw += [(payload, True, mid, 1) for _, payload, mid, _, _ in msgs]
        else:
            self._raw += [(payload, bool(labels) and topic == labels, mid, 1) for topic, payload, mid, _, _ in msgs]

    def _admit_arrivals(self) -> None:
        """Decode the messages read since the last call into spool rows (:meth:`Intake.admit_many`), in order."""
        raw, self._raw = self._raw, []
        if not raw:
            return
        t0 = time.perf_counter()
        try:
            items = self.intake.admit_many([(p if isinstance(p, bytes) else b"", lab) for p, lab, _, _ in raw])
        except Exception:  # noqa: BLE001 - admit_many does not raise; this guards the guard
            items = [self._admit_one(p if isinstance(p, bytes) else b"", lab) for p, lab, _, _ in raw]
        for k, (p, lab, _, _) in enumerate(raw):
            if not isinstance(p, bytes):
                items[k] = self.intake.internal(p, b"", "labels" if lab else "samples")
        self._arrived += [Arrived(it, mid, qos) for it, (_, _, mid, qos) in zip(items, raw)]
        labels = sum(1 for _, lab, _, _ in raw if lab)
        if labels:
            self._received_labels.inc(labels)
        if len(raw) > labels:
            self._received_samples.inc(len(raw) - labels)
        self._decode_s += time.perf_counter() - t0

    def _admit_one(self, payload: bytes, is_label: bool) -> Incoming:
        try:
            return self.intake.admit(payload, is_label)
        except Exception as exc:  # noqa: BLE001 - admit does not raise; this guards the guard
            return self.intake.internal(exc, payload, "labels" if is_label else "samples")

    def _flush(self, spool: Spool, final: bool = False) -> None:
        """Write what arrived to the spool and acknowledge it; while the spool refuses writes, hold it instead
        and try again when the backoff allows (``final``: one last try now, at shutdown)."""
        self._admit_arrivals()
        retry = self.spool_retry
        if retry.failing:
            if self._arrived:
                self._hold(self._arrived)
                self._arrived = []
            if not (final or retry.due()):
                self.metrics.messages_held.set(len(self.held))
                return
            batch = self.held.release()
            if not batch:  # nothing waits (a reconnect gave the held ones back): the next arrival tries the disk
                return
        else:
            batch, self._arrived = self._arrived, []
            if not batch:
                return
        t0 = time.perf_counter()
        try:
            seqs = spool.put_salvaging(
                [a.item for a in batch],
                lambda it, exc: self.intake.internal(exc, it.payload, "labels" if it.kind == LABEL else "samples"))
        except SpoolError as exc:
            if retry.failing:
                self.held.restore(batch)
            else:
                self._hold(batch)
            self._spool_failed(spool, exc)
            return
        spent = time.perf_counter() - t0
        self.metrics.spool_latency.observe(spent)
        self.metrics.stage["spool_write"].inc(spent)
        self.metrics.stage["decode"].inc(self._decode_s)
        self._decode_s = 0.0
        if retry.failing:
            retry.succeeded(spool.path)
            self.metrics.messages_held.set(0)
            self._redeliver = self.held.refused_acked > 0
        dups = [("label" if a.item.kind == LABEL else "sample", str(a.item.msg_id))
                for a, s in zip(batch, seqs) if s is None]
        if dups:
            self.metrics.duplicates.inc(len(dups))
            self._duplicates.ignored(dups)
        self._wake_learner()
        acks = [(a.mid, a.qos) for a in batch if a.qos > 0]  # durable now: acknowledge
        if hasattr(self._client, "ack_many"):
            self._client.ack_many(acks)
        else:
            for mid, qos in acks:
                self._client.ack(mid, qos)

    def _hold(self, batch: list[Arrived]) -> None:
        """Hold ``batch`` while the spool refuses writes; QoS 0 messages beyond the limit are lost: counted."""
        self.held.hold(batch)
        self.metrics.messages_held.set(len(self.held))
        lost, self.held.refused_lost = self.held.refused_lost, 0
        if lost:
            self.metrics.spool_dropped.inc(lost)
            self._lost_since_warning += lost
            if self._lost_warning.allow("qos0")[0]:
                log.warning("%d QoS 0 message(s) lost: the spool refuses writes and %d messages already wait in "
                            "memory (the broker keeps no copy of QoS 0 messages; topics.qos = 1 avoids this)",
                            self._lost_since_warning, self.held.limit)
                self._lost_since_warning = 0
        self._wake_learner()

    def _spool_failed(self, spool: Spool, exc: SpoolError) -> None:
        self.metrics.spool_write_failures.inc()
        self.metrics.messages_held.set(len(self.held))
        self.spool_retry.failed(spool.path, exc)

    def _report_held(self, spool: Spool) -> None:
        """At shutdown, say what the spool never took: the broker sends it again to the next start."""
        held = self.held.release()
        if not held:
            return
        qos0 = sum(1 for a in held if a.qos == 0)
        log.error("stopping with %d message(s) that spool %s refused: not acknowledged, so the broker sends them "
                  "again to the next start%s", len(held), spool.path,
                  f"; {qos0} QoS 0 message(s) among them are lost" if qos0 else "")

    def _wake_network(self) -> None:
        wake = self._wake_w
        if not self._waiting:
            return  # busy: it drains the outbox before its next wait, or sees it queued (_read)
        try:
            if wake is not None:
                wake.send(b"\0")
        except OSError:  # full (a wake-up is already pending) or closed at shutdown: nothing to do
            pass

    def _wake_learner(self) -> None:
        with self.spooled:
            self.spooled.notify_all()

    @property
    def _publishes(self) -> bool:
        """This session publishes (predictions, dead letters, status) and enforces the spool limit."""
        return self.role != Role.LABELS

    def _drain_outbox(self) -> None:
        """Publish what the learner queued, as far as the window of unacknowledged publishes allows."""
        if not self._publishes:
            return  # the labels session: the samples session publishes
        client = self._client
        # paho holds each QoS 1/2 publish in _out_messages until its PUBACK/PUBCOMP (no public accessor).
        room = PUBLISH_WINDOW - len(client._out_messages)
        if room <= 0 or not len(self.outbox):
            return
        t0 = time.perf_counter()
        outs = self.outbox.take(room)
        if hasattr(client, "publish_many"):
            client.publish_many([(out.topic, out.payload, out.qos, out.retain) for out in outs])
        else:
            for out in outs:
                client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
        self.metrics.stage["send"].inc(time.perf_counter() - t0)

    def _shutdown(self) -> None:
        client = self._client
        if client is None or not self._connected:
            return
        deadline = self._close_deadline or time.monotonic() + 5.0
        try:
            while time.monotonic() < deadline:
                self._drain_outbox()
                client.loop(0.01)
                # paho holds QoS 1 messages beyond the inflight window in _out_messages (no public
                # accessor); leaving before they are out would drop the last predictions.
                if len(self.outbox) == 0 and not client.want_write() and not client._out_messages:
                    break
            if self.topics.status and self._publishes:
                client.publish(self.topics.status, b"offline", qos=1, retain=True)
                end = time.monotonic() + 1.0
                while client.want_write() and time.monotonic() < end:
                    client.loop(0.01)
            client.disconnect()
            client.loop(0.05)
        except (OSError, ValueError) as exc:
            log.warning("disconnect was not clean: %s", exc)
