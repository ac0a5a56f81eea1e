"""Tests of edge_cl.daemon.spool: order, dedupe, durability across reopen, bound, compaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_cl.daemon.spool import LABEL, SAMPLE, Incoming, Spool


def items(ids: list[str], labeled: bool = True, size: int = 10) -> list[Incoming]:
    return [Incoming(SAMPLE, i, labeled, i.encode().ljust(size, b".")) for i in ids]


def test_order_and_dedupe(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db")
    seqs = sp.put_many(items(["a", "b", "c"]))
    assert seqs == [1, 2, 3]
    dup, d = sp.put_many(items(["b", "d"]))
    assert dup is None and d is not None and d > 3  # seqs increase; an ignored duplicate may leave a gap
    # same id on the labels topic is a different message
    (la,) = sp.put_many([Incoming(LABEL, "a", True, b'{"id":"a","y":1}')])
    assert la is not None and la > d
    rows = sp.read_after(0, 10)
    assert [r.msg_id for r in rows] == ["a", "b", "c", "d", "a"]
    assert [r.seq for r in sp.read_after(2, 2)] == [3, d]
    assert sp.depth(2) == 3
    # messages without an id are kept, never de-duplicated
    assert None not in sp.put_many([Incoming(SAMPLE, None, False, b"x"), Incoming(SAMPLE, None, False, b"x")])


def test_survives_reopen(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db")
    sp.put_many(items(["a", "b"]))
    sp.set_meta("k", "v")
    sp.close()
    sp2 = Spool(tmp_path / "s.db")
    assert [r.msg_id for r in sp2.read_after(0, 10)] == ["a", "b"]
    assert sp2.put_many(items(["a"])) == [None]
    assert sp2.get_meta("k") == "v" and sp2.last_seq() >= 2


def test_compact_keeps_ids_for_dedupe_then_forgets(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db")
    sp.put_many(items([f"m{i}" for i in range(10)]))
    sp.compact(upto=6, dedupe_window=3)
    assert [r.seq for r in sp.read_after(0, 100)] == [7, 8, 9, 10]
    assert sp.live_bytes() == 40
    assert sp.put_many(items(["m5"])) == [None]        # within the window: still a duplicate
    (again,) = sp.put_many(items(["m0"]))              # forgotten: accepted again, with a new seq
    assert again is not None and again > 10 and sp.last_seq() == again


def test_limit_drops_oldest_unlabeled_first(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=50)
    sp.put_many(items(["l1", "l2"], labeled=True) + items(["u1", "u2", "u3", "u4"], labeled=False)
                + items(["l3"], labeled=True))
    assert sp.live_bytes() == 70
    dropped = sp.enforce_limit(consumed=0)
    assert dropped == 2
    assert [r.msg_id for r in sp.read_after(0, 100)] == ["l1", "l2", "u3", "u4", "l3"]
    assert sp.live_bytes() <= 50


def test_limit_never_drops_consumed_rows_and_drop_labeled(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", max_bytes=20, drop_labeled=True)
    sp.put_many(items(["a", "b", "c", "d"], labeled=True))
    dropped = sp.enforce_limit(consumed=2)
    # rows 1-2 are consumed (needed after a crash until checkpointed); only 3-4 may go
    assert dropped == 2
    assert [r.seq for r in sp.read_after(0, 10)] == [1, 2]
    sp_keep = Spool(tmp_path / "k.db", max_bytes=20, drop_labeled=False)
    sp_keep.put_many(items(["a", "b", "c"], labeled=True))
    assert sp_keep.enforce_limit(consumed=0) == 0


def test_read_seqs(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db")
    sp.put_many(items(["a", "b", "c"]))
    assert [r.msg_id for r in sp.read_seqs([3, 1, 99])] == ["a", "c"]


def test_two_connections_share_the_file(tmp_path: Path) -> None:
    writer, reader = Spool(tmp_path / "s.db"), Spool(tmp_path / "s.db")
    writer.put_many(items(["a"]))
    assert [r.msg_id for r in reader.read_after(0, 10)] == ["a"]


def test_a_batch_with_duplicates_maps_each_item_to_its_row(tmp_path: Path) -> None:
    """The multi-row insert (issue #27): duplicates of old rows, of earlier items in the same batch and rows
    without an id, across more rows than one statement takes, get the seqs the rows really have."""
    sp = Spool(tmp_path / "s.db")
    sp.put_many(items(["old1", "old2"]))
    batch = items([f"n{i}" for i in range(200)] + ["old1", "n5", "n300"])
    batch.insert(100, Incoming(SAMPLE, None, False, b"no-id"))
    batch.insert(150, Incoming(LABEL, "n7", True, b"label"))  # same id, other kind: not a duplicate
    seqs = sp.put_many(batch)
    stored = {r.seq: (r.kind, r.msg_id, r.payload) for r in sp.read_after(2, 1000)}
    dups = [it.msg_id for it, s in zip(batch, seqs) if s is None]
    assert dups == ["old1", "n5"]
    assert len(stored) == len(batch) - 2
    for it, s in zip(batch, seqs):
        if s is not None:
            assert stored[s] == (it.kind, it.msg_id, it.payload)
    assert [s for s in seqs if s is not None] == sorted(stored)  # in order


def test_a_batch_without_duplicates_takes_consecutive_seqs(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db")
    assert sp.put_many(items(["a"])) == [1]
    seqs = sp.put_many(items([f"b{i}" for i in range(400)]))
    assert seqs == list(range(2, 402))
    assert [r.seq for r in sp.read_after(0, 1000)] == list(range(1, 402))


def test_compaction_in_slices_frees_the_oldest_first_and_says_how_many(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.db", durable=False)
    sp.put_many(items([f"m{i}" for i in range(10)]))
    assert sp.compact(upto=7, dedupe_window=100, limit=3) == 3
    assert [r.seq for r in sp.read_seqs(range(1, 11))] == [4, 5, 6, 7, 8, 9, 10]
    assert sp.compact(upto=7, dedupe_window=100, limit=3) == 3
    assert sp.compact(upto=7, dedupe_window=100, limit=3) == 1  # fewer than asked: done
    assert sp.compact(upto=7, dedupe_window=100) == 0
    assert [r.seq for r in sp.read_seqs(range(1, 11))] == [8, 9, 10]
    assert sp.put_many(items(["m1"])) == [None]  # ids kept for dedupe


def test_a_compaction_that_must_not_wait_gives_way_to_a_writer(tmp_path: Path) -> None:
    from edge_cl.daemon.spool import BUSY_TIMEOUT_S, SpoolBusy

    writer, loop = Spool(tmp_path / "s.db"), Spool(tmp_path / "s.db", durable=False)
    writer.put_many([Incoming(SAMPLE, f"m{i}", True, b"x" * 100) for i in range(10)])
    writer._db.execute("BEGIN IMMEDIATE")  # the network thread's spool write in progress
    try:
        with pytest.raises(SpoolBusy):
            loop.compact(10, 1000, limit=4, wait=False)
    finally:
        writer._db.execute("COMMIT")
    assert loop._db.execute("PRAGMA busy_timeout").fetchone()[0] == int(BUSY_TIMEOUT_S * 1000)  # waits again
    assert loop.compact(10, 1000, limit=4, wait=False) == 4
    assert len(loop.read_after(0, 100)) == 6
    writer.close()
    loop.close()
