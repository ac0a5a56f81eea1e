"""The checkpoint writer thread: one write at a time, outcomes reported once, close waits for the write."""

from __future__ import annotations

import threading

from edge_cl.daemon.checkpoint_writer import CheckpointWriter


def test_one_write_at_a_time_and_each_outcome_reported_once() -> None:
    release = threading.Event()
    done: list[int] = []

    def write(job: int) -> bool:
        assert release.wait(10)
        done.append(job)
        return job != 2

    w: CheckpointWriter[int] = CheckpointWriter(write)
    assert w.submit(1) and w.busy
    assert not w.submit(2)  # refused while the first is being written: the caller copies no state for it
    assert w.outcome() is None
    release.set()
    assert w.wait_idle(10) and w.outcome() is True and w.outcome() is None
    assert w.submit(2) and w.wait_idle(10) and w.outcome() is False
    assert done == [1, 2]
    assert w.close(10)


def test_a_write_that_raises_is_a_failed_outcome_not_a_dead_thread() -> None:
    def write(job: int) -> bool:
        if job == 1:
            raise RuntimeError("boom")
        return True

    w: CheckpointWriter[int] = CheckpointWriter(write)
    assert w.submit(1) and w.wait_idle(10) and w.outcome() is False
    assert w.submit(2) and w.wait_idle(10) and w.outcome() is True
    assert w.close(10)


def test_close_waits_for_the_write_in_progress_and_a_later_submit_starts_again() -> None:
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def write(job: int) -> bool:
        started.set()
        assert release.wait(10)
        done.append(job)
        return True

    w: CheckpointWriter[int] = CheckpointWriter(write)
    assert w.submit(1) and started.wait(10)
    assert not w.close(timeout=0.05)  # still writing
    release.set()
    assert w.close(10) and done == [1]
    assert w.submit(2) and w.wait_idle(10) and done == [1, 2]
    assert w.close(10)
