"""A full disk under the spool: the error raised and logged is SQLite's own, with the spool's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_cl.daemon.spool import SAMPLE, Incoming, Spool, SpoolError
from tests.daemon.faults import DiskFullConnection, small_tmpfs


def _items(n: int, size: int, start: int = 0) -> list[Incoming]:
    return [Incoming(SAMPLE, f"m{i}", True, bytes(size)) for i in range(start, start + n)]


def test_sqlite_own_rollback_does_not_hide_the_disk_full_error(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool.db")
    sp._db = DiskFullConnection(sp._db)  # type: ignore[assignment]
    with pytest.raises(SpoolError) as err:
        sp.put_many(_items(3, 10))
    msg = str(err.value)
    assert "database or disk is full" in msg and str(tmp_path / "spool.db") in msg
    assert "no transaction" not in msg and "cannot rollback" not in msg
    with pytest.raises(SpoolError, match="disk is full"):  # put_salvaging must not salvage a full disk
        sp.put_salvaging(_items(1, 10, 5), lambda it, exc: it)


def test_a_really_full_disk_names_the_cause_and_the_file(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "256k") as where:
        sp = Spool(where / "spool.db")
        try:
            with pytest.raises(SpoolError) as err:
                for k in range(200):
                    sp.put_many(_items(4, 16_384, 4 * k))
            msg = str(err.value)
            assert "full" in msg and str(where / "spool.db") in msg and "no transaction" not in msg
            assert sp.read_after(0, 1000)  # what was committed before the disk filled is still there
        finally:
            sp.close()
