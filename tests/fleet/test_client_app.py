"""edge_cl's ClientApp called as a SuperNode calls it, in process: what it sends and what it merges."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("flwr", reason="fleet learning needs Flower: pip install 'edge-cl[fleet]'")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, Metadata, RecordDict

from edge_cl.fleet import FleetChannel, merge
from edge_cl.fleet import client_app as fleet_client
from tests.fleet.helpers import LearningLoop, batches, learner, token_file

pytestmark = pytest.mark.integration


def context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def message(kind: str, arrays: ArrayRecord) -> Message:
    # As the SuperNode hands it over: with the metadata the SuperLink gave it (a ServerApp's process sets more).
    meta = Metadata(run_id=1, message_id="m1", src_node_id=1, dst_node_id=7, reply_to_message_id="", group_id="",
                    created_at=time.time(), ttl=600, message_type=kind)
    return Message(content=RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})}),
                   metadata=meta)


def test_train_sends_only_the_weights_and_the_sample_count_and_evaluate_merges(tmp_path) -> None:
    tok = token_file(tmp_path)
    lrn = learner(5)
    with FleetChannel(tok.read_text().strip(), timeout_s=30) as ch, \
            LearningLoop(lrn, ch, batches(5, 4)) as loop:
        assert loop.learned_all.wait(30)
        ctx = context({"fleet-address": ch.address, "fleet-token-file": str(tok)})
        reply = fleet_client.train(message(MessageType.TRAIN, ArrayRecord()), ctx)
        content = reply.content
        # Exactly one ArrayRecord of the trainable parameters and one MetricRecord holding the count: nothing
        # else leaves the device (no ConfigRecord, no sample, label or id).
        assert list(content.array_records) == ["arrays"] and list(content.metric_records) == ["metrics"]
        assert not content.config_records
        assert dict(content.metric_records["metrics"]) == {"num-examples": 4 * 8}
        sent = {k: a.numpy() for k, a in content.array_records["arrays"].items()}
        assert list(sent) == [n for n, _ in merge.trainable(lrn)]
        for name, p in merge.trainable(lrn):
            np.testing.assert_array_equal(sent[name], p.detach().numpy())

        # Before any aggregation the server's arrays are empty: nothing to merge.
        reply = fleet_client.evaluate(message(MessageType.EVALUATE, ArrayRecord()), ctx)
        assert reply.content.metric_records["metrics"]["merged"] == 0 and ch.merges == 0
        rng = np.random.default_rng(0)
        glob = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in sent.items()}
        reply = fleet_client.evaluate(
            message(MessageType.EVALUATE, ArrayRecord({k: Array(v) for k, v in glob.items()})), ctx)
        assert reply.content.metric_records["metrics"]["merged"] == 1 and ch.merges == 1
    for name, p in merge.trainable(lrn):
        np.testing.assert_array_equal(p.detach().numpy(), glob[name])


def test_a_node_config_without_the_channel_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="fleet-address and fleet-token-file"):
        fleet_client.train(message(MessageType.TRAIN, ArrayRecord()), context({}))


def test_below_min_new_samples_train_sends_counts_only_and_evaluate_still_merges(tmp_path) -> None:
    tok = token_file(tmp_path)
    lrn = learner(8)
    with FleetChannel(tok.read_text().strip(), timeout_s=30, min_new_samples=50) as ch, \
            LearningLoop(lrn, ch, batches(8, 2)) as loop:
        assert loop.learned_all.wait(30)
        ctx = context({"fleet-address": ch.address, "fleet-token-file": str(tok)})
        content = fleet_client.train(message(MessageType.TRAIN, ArrayRecord()), ctx).content
        # No ArrayRecord at all: the counts say why, and nothing else leaves the device.
        assert not content.array_records and not content.config_records and list(content.metric_records) == ["metrics"]
        metrics = dict(content.metric_records["metrics"])
        assert metrics == {"num-examples": 0, "skipped": 1, "new-samples": 16, "min-new-samples": 50}
        assert ch.stats.snapshot()["rounds_skipped"] == 1
        # The device still takes the round's global model (a late or idle device catches up).
        glob = {k: np.ones(p.shape, np.float32) for k, p in merge.trainable(lrn)}
        reply = fleet_client.evaluate(
            message(MessageType.EVALUATE, ArrayRecord({k: Array(v) for k, v in glob.items()})), ctx)
        assert reply.content.metric_records["metrics"]["merged"] == 1 and ch.merges == 1
