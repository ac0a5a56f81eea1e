"""edge_cl's ServerApp strategy, called as Flower calls it: replies without weights are left out of the average."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr", reason="fleet learning needs Flower: pip install 'edge-cl[fleet]'")

from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict

from edge_cl.fleet.aggregate import sample_weighted_average
from edge_cl.fleet.replies import skip_reason, skipped_metrics
from edge_cl.fleet.server_app import NODES_SKIPPED, SampleWeightedFedAvg


def reply(node: int, metrics: dict, arrays: dict[str, np.ndarray] | None = None) -> Message:
    meta = Metadata(run_id=1, message_id=f"m{node}", src_node_id=node, dst_node_id=1, reply_to_message_id="r",
                    group_id="1", created_at=0.0, ttl=600, message_type="train")
    content = {"metrics": MetricRecord(metrics)}
    if arrays is not None:
        content = {"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}), **content}
    return Message(content=RecordDict(content), metadata=meta)


def models(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(n)
    return [{"w": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
            for _ in range(n)]


def test_a_reply_without_weights_is_left_out_of_the_average_and_counted(caplog) -> None:
    sent = models(2)
    replies = [reply(1, {"num-examples": 30}, sent[0]), reply(2, skipped_metrics(4, 25)),
               reply(3, {"num-examples": 10}, sent[1])]
    with caplog.at_level("INFO", logger="flwr"):
        arrays, metrics = SampleWeightedFedAvg().aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    expected = sample_weighted_average(sent, [30, 10])  # node 2's zero-weight reply is not part of it
    for k, v in expected.items():
        np.testing.assert_array_equal(arrays[k].numpy(), v)
    assert metrics[NODES_SKIPPED] == 1
    assert any("node 2 sat the round out" in r.getMessage() and "min_new_samples 25" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_round_every_device_sat_out_keeps_the_global_model() -> None:
    arrays, metrics = SampleWeightedFedAvg().aggregate_train(2, [reply(1, skipped_metrics(0, 1)),
                                                                 reply(2, skipped_metrics(3, 10))])
    assert arrays is None and metrics is not None and metrics[NODES_SKIPPED] == 2


def test_skip_reason_reads_the_counts() -> None:
    assert skip_reason({"num-examples": 12}) is None
    assert skip_reason(skipped_metrics(3, 10)) == ("learned 3 samples since its last merge, below its "
                                                   "fleet.min_new_samples 10")


class _Grid:
    """What FedAvg's node sampling asks of a Grid: the connected nodes."""

    def get_node_ids(self) -> list[int]:
        return [11, 12]


def test_the_train_message_carries_no_model_so_a_round_costs_one_model_down() -> None:
    from flwr.app import ConfigRecord

    glob = ArrayRecord({k: Array(v) for k, v in models(1)[0].items()})
    strategy = SampleWeightedFedAvg(min_available_nodes=2)
    # Messages are built inside a run (Flower sets its id); what they would carry is what matters here.
    strategy._construct_messages = lambda record, nodes, kind: [(record, nodes, kind)]  # type: ignore[method-assign]
    [(record, nodes, kind)] = strategy.configure_train(3, glob, ConfigRecord(), _Grid())
    assert sorted(nodes) == [11, 12] and kind == "train"
    assert all(len(a) == 0 for a in record.array_records.values()), "the global model goes in evaluate only"
    assert record.config_records["config"]["server-round"] == 3
