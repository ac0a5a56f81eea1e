"""The daemon's end of the fleet: a loopback HTTP endpoint a Flower ClientApp reaches the learner by.

``GET /weights`` answers the trainable parameters (float32 ``.npz``, see :mod:`edge_cl.fleet.wire`) and, in
the ``X-Edge-CL-Samples-Since-Merge`` header, how many samples were learned since the last merge; with fewer than
``min_new_samples`` of them it answers 204 without weights (the device sits the round out), the count and the
minimum in headers. ``POST /global`` hands over a global model. Nothing else is served: no samples, labels or ids
ever cross it.

The learner belongs to the daemon's learning thread. The HTTP thread never touches it: each request is queued
and waits until that thread calls :meth:`FleetChannel.apply_pending` between two steps, which reads the
weights or merges the model there. A request not served within ``timeout_s`` is answered 503 and dropped, so a
model reported as not merged is never merged later.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import numpy as np

from edge_cl.fleet import merge, wire
from edge_cl.fleet.aggregate import blend
from edge_cl.fleet.refresh import REFRESH_CHOICES, refresh_after_merge
from edge_cl.fleet.settings import DEFAULT_MIN_NEW_SAMPLES, DEFAULT_REFRESH, FleetConfig
from edge_cl.fleet.stats import FleetStats
from edge_cl.fleet.token import read_token

log = logging.getLogger("edge_cl.fleet")

HOST = "127.0.0.1"  # never configurable: the ClientApp runs on the same device


@dataclass
class _Request:
    kind: str  # "weights" or "merge"
    arrays: dict[str, np.ndarray] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: bool = False
    result: Any = None
    error: str | None = None


class FleetChannel:
    """The loopback channel; the daemon builds it from its ``[fleet]`` table and calls :meth:`apply_pending`
    once per loop iteration, from the thread that runs ``learner.learn``."""

    def __init__(self, token: str, port: int = 0, timeout_s: float = 30.0, max_body_bytes: int = 256 << 20,
                 global_weight: float = 1.0, min_new_samples: int = DEFAULT_MIN_NEW_SAMPLES,
                 refresh: str = DEFAULT_REFRESH) -> None:
        if not 0.0 <= global_weight <= 1.0:
            raise ValueError(f"fleet.global_weight={global_weight} must be in [0, 1] (1: take the global model)")
        if min_new_samples < 0:
            raise ValueError(f"fleet.min_new_samples={min_new_samples} must be >= 0 (0: send the weights every round)")
        self._token = token
        self.global_weight = float(global_weight)
        self.min_new_samples = int(min_new_samples)
        if refresh not in REFRESH_CHOICES:
            raise ValueError(f"fleet.refresh_after_merge={refresh!r} must be one of {', '.join(REFRESH_CHOICES)}")
        self.refresh = refresh
        self.timeout_s = float(timeout_s)
        self.max_body_bytes = int(max_body_bytes)
        self._requests: queue.Queue[_Request] = queue.Queue()
        self._merged_at: int | None = None  # samples_learned at the last merge; None before the first
        self.stats = FleetStats()
        self._refusals_logged: set[str] = set()
        try:
            self._server = ThreadingHTTPServer((HOST, port), _handler_for(self))
        except OSError as exc:
            raise ValueError(f"fleet.port={port}: cannot listen on {HOST} ({exc.strerror}); pick a free port "
                             "(0: any) or set fleet.enabled = false") from None
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="edge-cl-fleet", daemon=True)
        self._thread.start()
        log.info("fleet channel on http://%s:%d (GET /weights, POST /global)", HOST, self.port)

    @classmethod
    def from_config(cls, cfg: FleetConfig) -> FleetChannel | None:
        """The channel ``cfg`` describes, serving; None when fleet learning is off."""
        if not cfg.enabled:
            return None
        assert cfg.token_file is not None  # FleetConfig insists on it when enabled
        return cls(read_token(cfg.token_file), cfg.port, cfg.timeout_s, cfg.max_body_bytes, cfg.global_weight,
                   cfg.min_new_samples, cfg.refresh_after_merge)

    @property
    def merges(self) -> int:
        """Global models merged so far."""
        return self.stats.merges

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the learning thread's side -----------------------------------------------------------------------
    def samples_since_merge(self, learner: Any) -> int:
        """Samples learned since the last merge; before the first, every sample the model has learned (the model
        embodies them all, so that is its weight in the first average)."""
        learned = int(learner.samples_learned)  # also folds in a fixed-shape step still in flight
        return learned - (self._merged_at if self._merged_at is not None else 0)

    def apply_pending(self, learner: Any) -> int:
        """Serve every queued request against ``learner`` (call between two steps, from the learning thread);
        returns how many global models were merged."""
        merged = 0
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return merged
            with req.lock:
                if req.cancelled:
                    continue
                try:
                    if req.kind == "weights":
                        samples = self.samples_since_merge(learner)
                        # Below the minimum no weights are copied: the round goes on without this device.
                        arrays = merge.local_weights(learner) if samples >= self.min_new_samples else None
                        req.result = (arrays, samples)
                    else:
                        assert req.arrays is not None
                        arrays = req.arrays
                        if self.global_weight < 1.0:  # checked first: a refused model blends into nothing
                            merge.check_global(learner, arrays)
                            arrays = blend(arrays, merge.local_weights(learner), self.global_weight)
                        merge.merge_global(learner, arrays)
                        # Part of the merge, before the next step: that step must see the refreshed state.
                        refresh_after_merge(learner, self.refresh)
                        self._merged_at = int(learner.samples_learned)
                        self.stats.merged()
                        merged += 1
                        log.info("fleet: merged a global model (merge %d)", self.merges)
                except ValueError as exc:
                    req.error = str(exc)
                    if req.kind == "merge":
                        self.stats.failed("refused")
                        self._warn_refused(str(exc))
                except Exception as exc:
                    log.exception("fleet: %s request failed", req.kind)
                    req.error = f"internal error: {exc}"
                    if req.kind == "merge":
                        self.stats.failed("internal")
                req.done.set()

    def _warn_refused(self, reason: str) -> None:
        # Once per distinct reason: a SuperLink that keeps sending the same bad model must not flood the log
        # (the count is in edge_cl_fleet_merge_failures_total).
        if reason not in self._refusals_logged:
            self._refusals_logged.add(reason)
            log.warning("fleet: global model refused, local learning goes on: %s", reason)

    # ---- the HTTP thread's side -----------------------------------------------------------------------
    def _submit(self, req: _Request) -> bool:
        """Queue ``req`` and wait for the learning thread; False (and the request dropped) on timeout."""
        self._requests.put(req)
        if req.done.wait(self.timeout_s):
            return True
        with req.lock:
            if req.done.is_set():
                return True
            req.cancelled = True
        return False

    def authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token.encode())


def _handler_for(channel: FleetChannel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edge-cl-fleet"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("fleet channel: " + format, *args)

        def _reply(self, code: int, body: bytes, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code: int, message: str) -> None:
            self._reply(code, json.dumps({"error": message}).encode())

        def _allowed(self) -> bool:
            if channel.authorized(self.headers.get("Authorization")):
                return True
            self._error(401, "missing or wrong bearer token (the SuperNode's node config must name the daemon's "
                             "fleet.token_file)")
            return False

        def _timed_out(self) -> None:
            self._error(503, f"the daemon's learning loop did not serve the request within {channel.timeout_s} s "
                             "(is the daemon running and calling apply_pending?); nothing was changed")

        def do_GET(self) -> None:
            if self.path != "/weights":
                return self._error(404, "only GET /weights and POST /global are served")
            if not self._allowed():
                return None
            req = _Request("weights")
            if not channel._submit(req):
                return self._timed_out()
            if req.error is not None:
                return self._error(500, req.error)
            arrays, samples = req.result
            if arrays is None:
                channel.stats.skipped()  # before the reply, as below
                return self._reply(204, b"", headers={wire.SAMPLES_HEADER: str(samples),
                                                      wire.MIN_SAMPLES_HEADER: str(channel.min_new_samples)})
            body = wire.encode(arrays)
            channel.stats.joined(len(body))  # before the reply: a client that has it sees it counted
            return self._reply(200, body, wire.CONTENT_TYPE, {wire.SAMPLES_HEADER: str(samples)})

        def do_POST(self) -> None:
            if self.path != "/global":
                return self._error(404, "only GET /weights and POST /global are served")
            if not self._allowed():
                return None
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                channel.stats.failed("bad_body")
                return self._error(411, "Content-Length is required")
            if not 0 < length <= channel.max_body_bytes:
                channel.stats.failed("bad_body")
                return self._error(413, f"a global model of {length} bytes is outside (0, fleet.max_body_bytes="
                                        f"{channel.max_body_bytes}]")
            body = self.rfile.read(length)
            channel.stats.received(len(body))
            try:
                arrays = wire.decode(body)
            except ValueError as exc:
                channel.stats.failed("bad_body")
                return self._error(400, str(exc))
            req = _Request("merge", arrays)
            if not channel._submit(req):
                channel.stats.failed("timeout")
                return self._timed_out()
            if req.error is not None:
                return self._error(422, req.error)
            return self._reply(200, json.dumps({"merged": True, "merges": channel.merges}).encode())

    return Handler
