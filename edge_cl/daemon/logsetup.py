"""Logging for the daemon: plain or JSON lines, and a rate limiter for repeated warnings."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and any ``extra`` fields that are JSON-able."""

    _STD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in self._STD and k not in out:
                out[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(level: str = "INFO", fmt: str = "plain") -> None:
    """Send the ``edge_cl`` loggers to stderr in the chosen format (called once by the CLI, not on import)."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"logging.format={fmt!r} is not supported; use 'plain' or 'json'")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("edge_cl")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class RateLimiter:
    """Lets one event per key through every ``interval`` seconds and counts the ones it held back."""

    def __init__(self, interval: float, clock: Callable[[], float] | None = None) -> None:
        if interval < 0:
            raise ValueError(f"interval={interval} must be >= 0")
        self.interval = interval
        self._clock = clock or time.monotonic
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(whether to log now, how many were suppressed since the last one logged)."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._held.pop(key, 0)
