"""What a daemon's fleet channel has done, counted for its metrics and status page (plain numbers, no ``flwr``,
no ``prometheus_client``: the daemon's metrics read them)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

# Why a global model was not merged: "refused" (another architecture, wrong shapes, NaN / Inf: answered 422),
# "timeout" (the learning loop did not serve it within fleet.timeout_s: 503), "bad_body" (not an .npz of numbers,
# or too large: 400 / 413), "internal" (a bug: 500).
FAILURE_REASONS = ("refused", "timeout", "bad_body", "internal")


@dataclass
class FleetStats:
    """Counters of one channel; written by its HTTP and learning threads, read by the metrics thread."""

    rounds_joined: int = 0      # weight reads answered: the rounds this device contributed its weights to
    rounds_skipped: int = 0     # weight reads answered without weights: fewer new samples than fleet.min_new_samples
    merges: int = 0             # global models merged into the learner
    last_merge_unix: float = 0.0  # wall-clock time of the last merge; 0 before the first
    bytes_sent: int = 0         # weight bodies handed to the ClientApp (what goes up through Flower)
    bytes_received: int = 0     # global-model bodies received (what came down), merged or not
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def joined(self, body_bytes: int) -> None:
        with self._lock:
            self.rounds_joined += 1
            self.bytes_sent += int(body_bytes)

    def skipped(self) -> None:
        with self._lock:
            self.rounds_skipped += 1

    def received(self, body_bytes: int) -> None:
        with self._lock:
            self.bytes_received += int(body_bytes)

    def merged(self) -> None:
        with self._lock:
            self.merges += 1
            self.last_merge_unix = time.time()

    def failed(self, reason: str) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"merge failure reason {reason!r} is not one of {FAILURE_REASONS}")
        with self._lock:
            self.failures[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter (``failures`` a new dict)."""
        with self._lock:
            return {"rounds_joined": self.rounds_joined, "rounds_skipped": self.rounds_skipped, "merges": self.merges,
                    "last_merge_unix": self.last_merge_unix, "bytes_sent": self.bytes_sent,
                    "bytes_received": self.bytes_received, "failures": dict(self.failures)}
