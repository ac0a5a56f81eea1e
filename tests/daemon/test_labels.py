"""Tests of edge_cl.daemon.labels: the delayed-label join is bounded in count and time."""

from __future__ import annotations

import numpy as np
import pytest

from edge_cl.daemon.labels import LabelJoin, Pending


def p(i: int, t: float = 0.0) -> Pending:
    return Pending(i, f"s{i}", np.full(2, i, dtype=np.float32), t)


def test_label_after_sample() -> None:
    j = LabelJoin(10, 60, 10)
    assert j.add_sample(p(1)) == (None, [])
    got = j.add_label("s1", 2)
    assert got is not None and got.seq == 1
    assert len(j) == 0


def test_label_before_sample() -> None:
    j = LabelJoin(10, 60, 10)
    assert j.add_label("s5", 1) is None
    assert j.add_sample(p(5)) == (1, [])
    assert len(j) == 0 and j.early_labels() == {}


def test_window_bounds() -> None:
    j = LabelJoin(3, 60, 2)
    evicted = [e for i in range(5) for e in j.add_sample(p(i))[1]]
    assert [e.seq for e in evicted] == [0, 1] and j.pending_seqs() == [2, 3, 4]
    for k in range(4):
        j.add_label(f"x{k}", 0)
    assert list(j.early_labels()) == ["x2", "x3"]


def test_expire_by_time() -> None:
    j = LabelJoin(10, 5.0, 0)
    j.add_sample(p(1, t=0.0))
    j.add_sample(p(2, t=4.0))
    assert [e.seq for e in j.expire(now=6.0)] == [1]
    assert j.pending_seqs() == [2]
    assert j.add_label("nobody", 1) is None and j.early_labels() == {}


def test_arguments_checked() -> None:
    with pytest.raises(ValueError, match="window_samples"):
        LabelJoin(0, 1, 1)


def test_every_early_label_pushed_out_is_reported() -> None:
    dropped: list[int] = []
    j = LabelJoin(10, 60, 3, on_label_dropped=dropped.append)
    for k in range(10):
        j.add_label(f"u{k}", 0)
    assert sum(dropped) == 7 and list(j.early_labels()) == ["u7", "u8", "u9"]
    none_kept: list[int] = []
    j0 = LabelJoin(10, 60, 0, on_label_dropped=none_kept.append)
    j0.add_label("u", 1)
    assert sum(none_kept) == 1 and j0.early_labels() == {}


def test_restoring_more_early_labels_than_the_bound_reports_the_excess() -> None:
    dropped: list[int] = []
    j = LabelJoin(10, 60, 2, on_label_dropped=dropped.append)
    j.restore_early({"a": 0, "b": 1, "c": 2})
    assert sum(dropped) == 1 and j.early_labels() == {"b": 1, "c": 2}
