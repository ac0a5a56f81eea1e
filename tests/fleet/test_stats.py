"""The channel counts what it did (rounds joined, merges, bytes each way, merges refused by reason)."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request

import numpy as np
import pytest

from edge_cl.fleet import FleetChannel, merge, wire
from edge_cl.fleet.local_client import ChannelError, DaemonChannel
from edge_cl.fleet.stats import FleetStats
from tests.fleet.helpers import LearningLoop, batches, learner, token_file


def test_counts_rounds_bytes_merges_and_refusals(tmp_path, caplog) -> None:
    tok = token_file(tmp_path)
    lrn = learner(0)
    with FleetChannel(tok.read_text().strip(), timeout_s=10) as ch, LearningLoop(lrn, ch, batches(0, 3)) as loop:
        assert loop.learned_all.wait(30)
        client = DaemonChannel(ch.address, tok)
        assert ch.stats.snapshot()["rounds_joined"] == 0
        arrays, _ = client.local_weights()
        s = ch.stats.snapshot()
        assert s["rounds_joined"] == 1 and s["bytes_sent"] == len(wire.encode(arrays)) > 0
        assert s["merges"] == 0 and s["last_merge_unix"] == 0.0

        before = time.time()
        client.merge_global(arrays)
        s = ch.stats.snapshot()
        assert s["merges"] == 1 and before <= s["last_merge_unix"] <= time.time()
        assert s["bytes_received"] == len(wire.encode(arrays))

        nan = {n: np.full(a.shape, np.nan, np.float32) for n, a in arrays.items()}
        with caplog.at_level(logging.WARNING, logger="edge_cl.fleet"):
            for _ in range(3):
                with pytest.raises(ChannelError, match="422"):
                    client.merge_global(nan)
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 1, "a refusal repeated by every round must be logged once"
        req = urllib.request.Request(ch.address + "/global", data=b"not an npz", method="POST",
                                     headers={"Authorization": f"Bearer {tok.read_text().strip()}"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)
        s = ch.stats.snapshot()
    assert s["merges"] == 1
    assert s["failures"] == {"refused": 3, "timeout": 0, "bad_body": 1, "internal": 0}
    assert s["bytes_received"] == 4 * len(wire.encode(arrays)) + len(b"not an npz")


def test_a_merge_the_loop_does_not_serve_counts_as_a_timeout(tmp_path) -> None:
    tok = token_file(tmp_path)
    with FleetChannel(tok.read_text().strip(), timeout_s=0.2) as ch:  # no learning loop serves it
        with pytest.raises(ChannelError, match="503"):
            DaemonChannel(ch.address, tok).merge_global(merge.local_weights(learner(1)))
        assert ch.stats.snapshot()["failures"]["timeout"] == 1
        assert ch.merges == 0


def test_counters_survive_concurrent_writers() -> None:
    stats = FleetStats()
    threads = [threading.Thread(target=lambda: [stats.joined(3) for _ in range(2000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.snapshot()["rounds_joined"] == 8000 and stats.bytes_sent == 24000
    with pytest.raises(ValueError, match="reason"):
        stats.failed("exploded")
