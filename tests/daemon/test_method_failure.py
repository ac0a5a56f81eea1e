"""A method that raises on a batch: the daemon books the batch as not learned and keeps running."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_cl import methods
from edge_cl.daemon.mqtt_source import Outbox
from edge_cl.daemon.service import Daemon
from edge_cl.daemon.spool import Spool
from edge_cl.methods import Method
from tests.daemon.test_service import CLASSES, config, drain, sample


class FailsOnSecondBatch(Method):
    """Raises in after_update on its second and third steps only."""

    name = "test-fails-twice"

    def __init__(self, ctx: Any, settings: Any) -> None:
        super().__init__(ctx, settings)
        self.calls = 0

    def after_update(self, step: Any) -> None:
        self.calls += 1
        if self.calls in (2, 3):
            raise ZeroDivisionError("planted: the method's own bug")


@pytest.fixture
def failing() -> Iterator[str]:
    methods.register(FailsOnSecondBatch)
    yield FailsOnSecondBatch.name
    methods.unregister(FailsOnSecondBatch.name)


def test_a_raising_method_dead_letters_its_batch_and_the_daemon_goes_on(tmp_path: Path, failing: str,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path)
    cfg = cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"method": f"er+{failing}"})})
    d = Daemon(cfg)
    sp = Spool(d.cfg.spool.path)
    d._restore(sp)
    d.outbox = Outbox(10_000, d.metrics)
    sp.put_many([sample(i, i % CLASSES) for i in range(16)])  # four batches of max_batch=4
    with caplog.at_level(logging.ERROR, logger="edge_cl"):
        d._process(sp.read_after(0, 100))
    out = drain(d)
    dead = [m for t, m in out if t == d.cfg.topics.dead_letter]
    preds = [m for t, m in out if t == d.cfg.topics.predictions]
    assert len(preds) == 16  # every valid sample is still predicted
    # The second and third batches were rolled back: each of their samples is a dead letter naming the method.
    assert [m["id"] for m in dead] == [f"s{i}" for i in range(4, 12)]
    assert all(m["reason"] == "internal" and f"method '{failing}' raised in after_update" in m["detail"]
               for m in dead)
    assert d.progress.learned == 8 and d.learner.step == 2 and d.progress.position == sp.last_seq()
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and failing in r.getMessage()]
    assert len(logged) == 1  # once per cause, not once per batch
