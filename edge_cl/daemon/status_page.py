"""The daemon's read-only status page: accuracy history, a JSON snapshot of live numbers, and the HTTP app
that serves both beside Prometheus' ``/metrics`` on one port.

The learning loop writes (``StatusHistory.on_learn``, ``snapshot``); the HTTP thread only reads what the
loop last published, so the page never touches the learner from another thread.
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from importlib import resources
from statistics import fmean
from typing import Any

RECENT_WINDOW = 200     # predictions in the "recent accuracy" window
LATENCY_WINDOW = 1000   # learn steps whose wall times give the page's latency quantiles
MAX_POINTS = 600        # history points kept; older ones are thinned, so memory stays bounded


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts local connections (the page is on by default only then)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StatusHistory:
    """Accuracy over the stream (prequential and recent) with consolidation marks, bounded in memory."""

    def __init__(self, every: int = 20, max_points: int = MAX_POINTS) -> None:
        if every <= 0 or max_points < 4:
            raise ValueError(f"every={every} must be >= 1 and max_points={max_points} >= 4")
        self.every, self.max_points = every, max_points
        self._lock = threading.Lock()
        self._recent: deque[tuple[int, int]] = deque()
        self._recent_n = self._recent_ok = 0
        self._total_n = self._total_ok = 0
        self._next_point = 0
        self.points: list[dict[str, float]] = []
        self.marks: list[dict[str, Any]] = []
        self._seconds: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._steps = 0

    def on_learn(self, learned: int, correct: int, batch: int, consolidated: bool,
                 seconds: float | None = None) -> None:
        """Record one learn step: ``correct`` of ``batch`` new samples were predicted right before it; it took
        ``seconds`` of wall time."""
        with self._lock:
            self._steps += 1
            if seconds is not None:
                self._seconds.append(seconds)
            self._total_n += batch
            self._total_ok += correct
            self._recent.append((batch, correct))
            self._recent_n += batch
            self._recent_ok += correct
            while self._recent_n - self._recent[0][0] >= RECENT_WINDOW:
                n, ok = self._recent.popleft()
                self._recent_n -= n
                self._recent_ok -= ok
            if consolidated:
                self.marks.append({"learned": learned, "kind": "consolidation", "t": time.time()})
                del self.marks[:-self.max_points]
            if learned >= self._next_point:
                self._next_point = learned + self.every
                self.points.append({"learned": learned, "prequential": self._total_ok / self._total_n,
                                    "recent": self._recent_ok / self._recent_n})
                if len(self.points) > self.max_points:
                    self.points = self.points[::2]  # thin evenly: the curve keeps its whole span
                    self.every *= 2

    def mark(self, learned: int, kind: str) -> None:
        """Add a mark (e.g. a drift the caller knows of) at ``learned`` samples."""
        with self._lock:
            self.marks.append({"learned": learned, "kind": kind, "t": time.time()})
            del self.marks[:-self.max_points]

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"points": list(self.points), "marks": list(self.marks)}

    def latency_ms(self) -> dict[str, Any]:
        """Mean, median and 95th percentile (ms) of the last ``LATENCY_WINDOW`` learn steps' own wall times
        (``window`` of them; ``steps`` since start). Prometheus' histogram only knows bucket edges, which the page
        once showed as if they were quantiles."""
        with self._lock:
            times = sorted(self._seconds)
            steps = self._steps
        if not times:
            return {"mean": None, "p50": None, "p95": None, "window": 0, "steps": steps}

        def q(p: float) -> float:  # nearest rank: a time one of the steps really took
            return 1000.0 * times[max(0, math.ceil(p * len(times)) - 1)]

        return {"mean": 1000.0 * fmean(times), "p50": q(0.5), "p95": q(0.95), "window": len(times), "steps": steps}


def snapshot(learner: Any, report: dict[str, Any], registry: Any, spool_depth: float) -> dict[str, Any]:
    """The live numbers of the page, read in the learning loop's thread (the only one touching the learner)."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in registry.collect():
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    dead = {dict(k)["reason"]: v for k, v in samples.get("edge_cl_bad_inputs_total", {}).items()}
    snaps = {dict(k)["outcome"]: v for k, v in samples.get("edge_cl_snapshots_total", {}).items()}
    version = samples.get("edge_cl_snapshot_version", {}).get((), 0.0)
    return {
        "time": time.time(), "step": int(learner.step), "device": str(report.get("device", "")),
        "prequential_accuracy": learner.prequential_accuracy, "consolidations": int(learner.consolidations),
        "buffer": {"size": int(report["buffer_size"]), "capacity": int(report["buffer_capacity"]),
                   "fill": float(report["buffer_fill_ratio"]),
                   "by_class": {str(k): int(v) for k, v in sorted(learner.buffer.class_histogram().items())}},
        "budget": {"bytes": int(report["budget_bytes"]), "reserved": int(report["reserved_bytes"]),
                   "parts": {k: int(v) for k, v in dict(report["parts"]).items()}},
        "spool_depth": int(spool_depth),
        "dead_letters": {k: int(v) for k, v in sorted(dead.items())},
        "snapshot": {"version": int(version) if version else None, "outcomes": {k: int(v) for k, v in snaps.items()}},
    }


def page_html() -> bytes:
    """The page itself: plain HTML + one inline script polling ``status.json`` (no CDN: devices are offline)."""
    return resources.files("edge_cl.daemon").joinpath("static/status.html").read_bytes()


def make_app(metrics_app: Callable[..., Any], status: Callable[[], dict[str, Any]] | None) -> Callable[..., Any]:
    """A WSGI app: ``/metrics`` (Prometheus), and when ``status`` is given ``/`` and ``/status.json``.

    Read-only: anything but GET/HEAD is refused."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics" or path.startswith("/metrics/"):
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"read-only\n"]
        if status is not None and path in ("/", "/index.html"):
            body, ctype = page_html(), "text/html; charset=utf-8"
        elif status is not None and path == "/status.json":
            body, ctype = json.dumps(status(), allow_nan=False).encode(), "application/json"
        else:
            hint = "see /metrics" + (", / and /status.json" if status is not None else
                                     " (the status page is off: metrics.status_page = true turns it on)")
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"not found; {hint}\n".encode()]
        start_response("200 OK", [("Content-Type", ctype), ("Cache-Control", "no-store"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app
