"""Backoff for a periodic write that fails for a reason outside the daemon (a full or read-only disk).

A checkpoint that cannot be written used to stop the daemon, and systemd restarted it into the same full disk
every 5 s while nothing was predicted. The model is still in memory and the spool still holds every message
after the last good checkpoint, so the daemon keeps predicting and learning and tries the write again, less
and less often; the cause is logged once, with the path, and once more when the write works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from edge_cl.daemon.spool import SpoolError

log = logging.getLogger("edge_cl.daemon")


class WriteRetry:
    """When to try a failing write again (doubling from ``min_s`` to ``max_s``), and what to log about it."""

    def __init__(self, what: str, min_s: float = 1.0, max_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, meanwhile: str = "") -> None:
        self.what = what
        # What the daemon does while the write fails (said once, in the log line that names the cause).
        self.meanwhile = meanwhile or ("The daemon keeps predicting and learning from memory (the spool keeps "
                                       f"every message since the last good {what})")
        self.min_s, self.max_s = min_s, max_s
        self._clock = clock
        self._delay = min_s
        self._next = 0.0
        self._since: float | None = None  # when the current run of failures began
        self.failures = 0                 # failures in the current run

    @property
    def failing(self) -> bool:
        """True from a failure until the next success."""
        return self._since is not None

    def due(self) -> bool:
        """Whether the write may be tried now."""
        return self._since is None or self._clock() >= self._next

    def failed(self, path: Path, exc: BaseException) -> None:
        """Book a failure; the first of a run is logged with the path and the cause."""
        now = self._clock()
        if self._since is None:
            self._since = now
            log.error("%s %s failed: %s. %s. Retrying with backoff up to every %gs; free space or fix the "
                      "directory's permissions, no restart needed", self.what, path, _cause(exc), self.meanwhile,
                      self.max_s)
        else:
            self._delay = min(self._delay * 2, self.max_s)
        self.failures += 1
        self._next = now + self._delay

    def succeeded(self, path: Path) -> None:
        """Book a success; after a run of failures, say the write works again."""
        if self._since is not None:
            log.warning("%s %s written again after %d failed attempt(s) over %.0fs", self.what, path, self.failures,
                        self._clock() - self._since)
        self._since = None
        self.failures = 0
        self._delay = self.min_s


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"[Errno {exc.errno}] {exc.strerror}{where}"
    if isinstance(exc, SpoolError) and exc.__cause__ is not None:  # SQLite's own words; the path is logged already
        return str(exc.__cause__)
    return f"{type(exc).__name__}: {exc}"
