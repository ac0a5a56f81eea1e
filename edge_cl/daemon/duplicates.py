"""A rate-limited warning about message ids the spool ignored as already seen.

The spool drops a message whose id it already holds (a broker redelivery, which is right), and a device whose
message counter restarted after a reboot looks exactly the same: every new message is silently dropped. The
counter metric alone went unnoticed, so the daemon says it in the log, with an id and the count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("edge_cl.daemon")


class DuplicateWarning:
    """Logs at most one warning every ``interval`` seconds, counting every ignored id since the last one."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None
        self._count = 0
        self._example = ""

    def ignored(self, ids: list[tuple[str, str]]) -> None:
        """Record ``(topic kind, message id)`` pairs the spool ignored; warn when the interval allows."""
        if not ids:
            return
        self._count += len(ids)
        kind, mid = ids[-1]
        self._example = f"{kind} id {mid!r}"
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return
        log.warning("ignored %d message(s) whose id the spool already holds (latest: %s) since the last warning. "
                    "A broker redelivery is harmless; if a device's message counter restarted (a reboot), its new "
                    "messages are being dropped: put a boot id in its message ids, or set spool.dedupe_window_s "
                    "(deploy/README.md, 'Message ids')", self._count, self._example)
        self._last = now
        self._count = 0
