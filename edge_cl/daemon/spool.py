"""A durable, bounded, de-duplicating queue between the network and the learner (SQLite in WAL mode).

Rows get an increasing ``seq``; the learner consumes them in order and checkpoints the last ``seq`` it
learned. A message is acknowledged to the broker only after :meth:`Spool.put_many` returned (the rows are
fsync'd), and a redelivered message (same kind and id) is ignored, so each message is learned once.
Each thread opens its own ``Spool`` on the same file (SQLite connections are per thread).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE = 0
LABEL = 1
BAD = 2  # a rejected message waiting to be dead-lettered by the learner (never de-duplicated)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     INTEGER NOT NULL,
    msg_id   TEXT,
    labeled  INTEGER NOT NULL DEFAULT 0,
    nbytes   INTEGER NOT NULL,
    received REAL NOT NULL,
    payload  BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS spool_dedupe ON spool(kind, msg_id) WHERE msg_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spool_live ON spool(seq, nbytes) WHERE payload IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_INSERT = "INSERT OR IGNORE INTO spool(kind, msg_id, labeled, nbytes, received, payload) VALUES "
_ROW = "(?,?,?,?,?,?)"
BUSY_TIMEOUT_S = 30.0  # how long a write waits for another connection's transaction
_ROWS_PER_INSERT = 150  # 6 parameters a row: under SQLite's historical limit of 999 per statement


@dataclass(frozen=True)
class Row:
    """One spooled message."""

    seq: int
    kind: int
    msg_id: str | None
    payload: bytes
    received: float


@dataclass(frozen=True)
class Incoming:
    """A message to spool: kind (SAMPLE or LABEL), id for dedupe (None: no dedupe), labeled flag, payload."""

    kind: int
    msg_id: str | None
    labeled: bool
    payload: bytes


class SpoolError(OSError):
    """The spool file refused a read or write (disk full, read-only, I/O error); the message names the file."""


class SpoolBusy(Exception):
    """Another connection holds the spool's write lock and the caller asked not to wait for it."""


class Spool:
    """One connection to the spool file; not shared between threads."""

    def __init__(self, path: str | Path, *, max_bytes: int = 256 << 20, drop_labeled: bool = False,
                 dedupe_window_s: float | None = None, durable: bool = True) -> None:
        if max_bytes < 1:
            raise ValueError(f"spool.max_bytes={max_bytes} must be positive")
        if dedupe_window_s is not None and not dedupe_window_s > 0:
            raise ValueError(f"spool.dedupe_window_s={dedupe_window_s} must be positive")
        self.dedupe_window_s = dedupe_window_s
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.drop_labeled = drop_labeled
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=True)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsync'd, so an acknowledged message survives power loss. A connection that only frees
        # what checkpoints hold (``durable=False``, the learning loop's) loses nothing that matters with NORMAL: a
        # compaction a power cut undoes is done again by the next checkpoint.
        self._db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _abort(self, exc: BaseException) -> None:
        """Roll back the open transaction, keeping ``exc`` as the error raised.

        SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR); an unconditional ROLLBACK then
        fails with "no transaction is active", and that second error used to replace the real cause.
        """
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error says what went wrong; this one would only hide it
        if isinstance(exc, sqlite3.OperationalError):
            raise SpoolError(f"spool.path={str(self.path)!r}: {exc}; free space on its file system or point "
                             "spool.path at a writable disk") from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        try:
            self._db.close()
        except sqlite3.Error:
            pass

    def put_many(self, items: Sequence[Incoming]) -> list[int | None]:
        """Store messages durably in one transaction; per item its new seq, or None for a duplicate."""
        out: list[int | None] = []
        if not items:
            return out
        now = time.time()
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if self.dedupe_window_s is None:
                out = self._insert_rows(cur, items, now)
            else:
                for it in items:
                    # An id last seen longer ago than the window is a new message (a device counter restarted):
                    # the old row keeps its payload and seq, it only gives up its id.
                    cur.execute("UPDATE spool SET msg_id = NULL WHERE kind = ? AND msg_id = ? AND received < ?",
                                (it.kind, it.msg_id, now - self.dedupe_window_s))
                    cur.execute(_INSERT + _ROW, (it.kind, it.msg_id, int(it.labeled), len(it.payload), now, it.payload))
                    out.append(cur.lastrowid if cur.rowcount == 1 else None)
            cur.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        return out

    def _insert_rows(self, cur: sqlite3.Cursor, items: Sequence[Incoming], now: float) -> list[int | None]:
        """Insert ``items`` with a few multi-row statements (inside the caller's transaction); their seqs.

        Python's sqlite3 lets go of the GIL for each statement step: one INSERT per message made the network
        thread wait for the learning loop to hand the GIL back once a message (issue #27). New rows take
        consecutive seqs in order; when some were duplicates (ignored), the rows inserted are read back to tell
        which.
        """
        first = self.last_seq() + 1
        inserted = 0
        for i in range(0, len(items), _ROWS_PER_INSERT):
            part = items[i:i + _ROWS_PER_INSERT]
            params = [v for it in part for v in (it.kind, it.msg_id, int(it.labeled), len(it.payload), now, it.payload)]
            cur.execute(_INSERT + ",".join([_ROW] * len(part)), params)
            inserted += cur.rowcount
        if inserted == len(items):
            return list(range(first, first + len(items)))
        rows = cur.execute("SELECT seq, kind, msg_id FROM spool WHERE seq >= ? ORDER BY seq", (first,)).fetchall()
        out: list[int | None] = []
        j = 0
        for it in items:  # the rows inserted are the items that were not duplicates, in order
            if j < len(rows) and rows[j][1] == it.kind and rows[j][2] == it.msg_id:
                out.append(int(rows[j][0]))
                j += 1
            else:
                out.append(None)
        return out

    def put_salvaging(self, items: Sequence[Incoming],
                      salvage: Callable[[Incoming, Exception], Incoming]) -> list[int | None]:
        """:meth:`put_many`, but an item the database refuses is replaced by ``salvage(item, error)``.

        One bad row must not keep a whole batch unacknowledged (and redelivered forever). Errors of the
        database itself (disk full, I/O, locked: ``sqlite3.OperationalError``) are raised: retrying later
        is right for those, and acknowledging would lose the messages.
        """
        try:
            return self.put_many(items)
        except (sqlite3.OperationalError, SpoolError):
            raise
        except Exception:  # noqa: BLE001 - find the row at fault, one transaction each
            out: list[int | None] = []
            for it in items:
                try:
                    out += self.put_many([it])
                except (sqlite3.OperationalError, SpoolError):
                    raise
                except Exception as exc:  # noqa: BLE001
                    out += self.put_many([salvage(it, exc)])
            return out

    def read_after(self, position: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with seq > position, in order (rows dropped by overflow are skipped)."""
        rows = self._db.execute(
            "SELECT seq, kind, msg_id, payload, received FROM spool WHERE seq > ? AND payload IS NOT NULL "
            "ORDER BY seq LIMIT ?", (position, limit)).fetchall()
        return [Row(int(s), int(k), m, bytes(p), float(r)) for s, k, m, p, r in rows]

    def read_seqs(self, seqs: Iterable[int]) -> list[Row]:
        """The rows with these seqs that still hold a payload, in seq order."""
        wanted = sorted({int(s) for s in seqs})
        out: list[Row] = []
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out += [Row(int(s), int(k), m, bytes(p), float(r)) for s, k, m, p, r in self._db.execute(
                f"SELECT seq, kind, msg_id, payload, received FROM spool WHERE seq IN ({marks}) AND payload IS NOT NULL "
                "ORDER BY seq", chunk)]
        return out

    def depth(self, position: int, kind: int | None = None) -> int:
        """How many messages wait after ``position`` (the learner's lag); of one ``kind`` only when given."""
        if kind is None:
            return int(self._db.execute("SELECT COUNT(*) FROM spool WHERE seq > ? AND payload IS NOT NULL",
                                        (position,)).fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM spool WHERE seq > ? AND payload IS NOT NULL AND kind = ?",
                                    (position, kind)).fetchone()[0])

    def live_bytes(self) -> int:
        """Payload bytes still held."""
        return int(self._db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM spool WHERE payload IS NOT NULL")
                   .fetchone()[0])

    def last_seq(self) -> int:
        """The largest seq ever given (0 for an empty spool)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='spool'").fetchone()
        return int(row[0]) if row else 0

    def enforce_limit(self, consumed: int) -> int:
        """Drop oldest not-yet-consumed payloads until under ``max_bytes``; return how many were dropped.

        Unlabeled samples go first; labeled ones and labels only when ``drop_labeled`` is set.
        Rows at or below ``consumed`` are kept: the learner may still need them after a crash.
        """
        excess = self.live_bytes() - self.max_bytes
        if excess <= 0:
            return 0
        dropped = 0
        where = ["kind = 0 AND labeled = 0"] + (["1 = 1"] if self.drop_labeled else [])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for cond in where:
                rows = self._db.execute(
                    f"SELECT seq, nbytes FROM spool WHERE seq > ? AND payload IS NOT NULL AND {cond} ORDER BY seq",
                    (consumed,))
                victims: list[int] = []
                for seq, nbytes in rows:
                    if excess <= 0:
                        break
                    victims.append(int(seq))
                    excess -= int(nbytes)
                self._db.executemany("UPDATE spool SET payload = NULL WHERE seq = ?", [(s,) for s in victims])
                dropped += len(victims)
                if excess <= 0:
                    break
            self._db.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        return dropped

    def compact(self, upto: int, dedupe_window: int, limit: int | None = None, wait: bool = True) -> int:
        """Free payloads at or below ``upto`` (learned and checkpointed) and forget ids older than the window; with
        ``limit``, the oldest ``limit`` payloads at most, so that a caller can spread the work. How many payloads
        were freed. ``wait=False``: raise :class:`SpoolBusy` at once if another connection is writing."""
        if wait:
            self._db.execute("BEGIN IMMEDIATE")
        else:
            self._db.execute("PRAGMA busy_timeout = 0")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF == sqlite3.SQLITE_BUSY:
                    raise SpoolBusy(str(exc)) from None
                self._abort(exc)
                raise
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        try:
            if limit is None:
                cur = self._db.execute("UPDATE spool SET payload = NULL WHERE seq <= ? AND payload IS NOT NULL",
                                       (upto,))
            else:
                cur = self._db.execute(
                    "UPDATE spool SET payload = NULL WHERE seq IN (SELECT seq FROM spool WHERE seq <= ? AND payload "
                    "IS NOT NULL ORDER BY seq LIMIT ?)", (upto, limit))
            freed = cur.rowcount
            self._db.execute("DELETE FROM spool WHERE seq <= ? AND payload IS NULL", (upto - dedupe_window,))
            self._db.execute("COMMIT")
        except BaseException as exc:
            self._abort(exc)
            raise
        return int(freed)

    def get_meta(self, key: str) -> str | None:
        """A value of the small key/value table (e.g. whether an MQTT session was ever created)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the key/value table, durably."""
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
