"""Checkpoints written on a thread of their own, so that a slow or stuck disk never holds up predictions.

The learning loop copies the learner's state between two chunks (tensor copies: a memcpy of the state's bytes,
far cheaper than serialising and fsync'ing them) and hands the copy to :class:`CheckpointWriter`, whose thread
serialises it, writes it atomically with its integrity record and frees the spool rows it covers. One write at a
time: while one is in progress the loop takes no further copy (a stuck disk costs no memory), and reads what
became of it with :meth:`CheckpointWriter.outcome`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("edge_cl.daemon")

J = TypeVar("J")


class CheckpointWriter(Generic[J]):
    """Runs ``write(job)`` for one job at a time on its own thread (started by the first :meth:`submit`);
    ``write`` returns whether the checkpoint was written."""

    def __init__(self, write: Callable[[J], bool], name: str = "edge-cl-checkpoint") -> None:
        self._write = write
        self._name = name
        self._cond = threading.Condition()
        self._job: J | None = None
        self._busy = False
        self._outcome: bool | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """True from :meth:`submit` until that write finished."""
        return self._busy

    def submit(self, job: J) -> bool:
        """Hand ``job`` to the writer thread; False (job not taken) while a write is in progress or after close."""
        with self._cond:
            if self._busy or self._closing:
                return False
            self._job, self._busy = job, True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def outcome(self) -> bool | None:
        """Whether the last finished write succeeded, reported once; None when none finished since the last call."""
        with self._cond:
            out, self._outcome = self._outcome, None
            return out

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no write is in progress; False if one still is after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Let the write in progress finish (up to ``timeout``) and end the thread; False if it still runs. A later
        :meth:`submit` starts a new thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        with self._cond:
            self._closing, self._thread = False, None
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._closing)
                job, self._job = self._job, None
            if job is None:
                return
            try:
                ok = bool(self._write(job))
            except Exception:  # the thread must report, never die silently (the next try may work)
                log.exception("checkpoint write failed on an internal error; the next checkpoint tries again")
                ok = False
            with self._cond:
                self._outcome, self._busy = ok, False
                self._cond.notify_all()
