"""Checkpoint integrity (issue #12): a damaged checkpoint is refused, loudly, and the daemon falls back to the
previous good one, re-learning from the spool what came after it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_cl.daemon.service import Daemon, latest_checkpoint
from tests.daemon.test_service import make, sample


def flip(path: Path, at: float, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def three_checkpoints(tmp_path: Path) -> tuple[Daemon, list[tuple[Path, int, int]]]:
    d, sp = make(tmp_path)
    saved = []
    for k in range(3):
        sp.put_many([sample(10 * k + i, i % 3) for i in range(5)])
        d._process(sp.read_after(d.progress.position, 100))
        saved.append((d._checkpoint(sp), d.progress.position, d.progress.learned))
    return d, saved


@pytest.mark.parametrize("at", [0.1, 0.5, 0.9])
def test_damaged_checkpoint_is_refused_and_the_previous_one_used(tmp_path: Path, at: float,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    d, saved = three_checkpoints(tmp_path)
    newest, _, learned_all = saved[-1]
    flip(newest, at)
    with caplog.at_level(logging.ERROR):
        d2, sp2 = make(tmp_path)
    assert (d2.progress.position, d2.progress.learned) == saved[1][1:]  # the previous good one
    assert "refused" in caplog.text and "sha256" in caplog.text
    assert not newest.exists() and newest.with_name(newest.name + ".damaged").exists()
    # what the damaged checkpoint had learned is still in the spool: learned again, nothing lost
    d2._process(sp2.read_after(d2.progress.position, 100))
    assert d2.progress.learned == learned_all and d2.progress.digest == d.progress.digest


def test_only_checkpoint_damaged_is_a_clear_error(tmp_path: Path) -> None:
    d, sp = make(tmp_path)
    sp.put_many([sample(0, 0)])
    d._process(sp.read_after(0, 10))
    path = d._checkpoint(sp)
    flip(path, 0.5)
    with pytest.raises(ValueError, match="refused.*no earlier checkpoint"):
        make(tmp_path)
    assert path.exists()  # left in place: nothing is started afresh behind the operator's back


def test_checkpoint_without_its_record_is_not_trusted_when_others_have_one(tmp_path: Path) -> None:
    from edge_cl.daemon import checkpoints

    _, saved = three_checkpoints(tmp_path)
    checkpoints.record_path(saved[-1][0]).unlink()  # as if the daemon died between the two writes
    d2, _ = make(tmp_path)
    assert d2.progress.position == saved[1][1]


def test_legacy_checkpoints_without_records_still_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edge_cl.daemon import checkpoints

    _, saved = three_checkpoints(tmp_path)
    for path, _, _ in saved:
        checkpoints.record_path(path).unlink()
    with caplog.at_level(logging.WARNING):
        d2, _ = make(tmp_path)
    assert d2.progress.position == saved[-1][1] and "unverified" in caplog.text
    assert latest_checkpoint(d2.cfg.checkpoint.dir) == saved[-1][0]
