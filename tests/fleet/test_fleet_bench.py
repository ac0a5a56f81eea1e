"""benchmarks/fleet.py's core at tiny size: rounds move every device towards the global model, a round costs one
encoded model up and one down, isolated devices never influence each other; and the pure aggregation it shares
with the ServerApp."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl.fleet import wire
from edge_cl.fleet.aggregate import blend, sample_weighted_average, server_step
from edge_cl.fleet.merge import local_weights
from tests.data_files import mnist_present

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("fleet_bench", ROOT / "benchmarks" / "fleet.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fleet_bench"] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


SPEC = {"type": "mlp", "input_dim": 12, "hidden": [8], "num_classes": 3}


def learners(bench, n: int = 3) -> list:
    budget = bench.device_budget(SPEC, 20)
    return [bench.make_learner(SPEC, budget, 0, d) for d in range(n)]


def learn_apart(lrns: list, steps: int = 5) -> None:
    """Each device its own data, so their weights differ."""
    for d, lrn in enumerate(lrns):
        g = torch.Generator().manual_seed(d)
        for _ in range(steps):
            lrn.learn(torch.rand(10, 12, generator=g) + d, torch.randint(0, 3, (10,), generator=g))


def distance(a: dict, b: dict) -> float:
    return float(sum(np.abs(a[k] - b[k]).sum() for k in a))


def test_sample_weighted_average_weights_by_samples_and_skips_an_empty_round() -> None:
    m1, m2 = {"w": np.array([0.0, 4.0], np.float32)}, {"w": np.array([4.0, 0.0], np.float32)}
    np.testing.assert_allclose(sample_weighted_average([m1, m2], [30, 10])["w"], [1.0, 3.0])
    assert sample_weighted_average([m1, m2], [0, 0]) is None
    with pytest.raises(ValueError, match="same model"):
        sample_weighted_average([m1, {"v": np.zeros(2, np.float32)}], [1, 1])
    np.testing.assert_allclose(blend(m1, m2, 0.25)["w"], [3.0, 1.0])
    with pytest.raises(ValueError, match="a=1.5"):
        blend(m1, m2, 1.5)


def test_the_server_step_moves_from_the_previous_global_model_by_its_rate() -> None:
    prev, avg = {"w": np.array([1.0, 1.0], np.float32)}, {"w": np.array([2.0, 0.0], np.float32)}
    np.testing.assert_allclose(server_step(prev, avg, 2.0)["w"], [3.0, -1.0])
    np.testing.assert_allclose(server_step(prev, avg, 0.5)["w"], [1.5, 0.5])
    np.testing.assert_array_equal(server_step(prev, avg, 1.0)["w"], avg["w"])  # plain FedAvg
    np.testing.assert_array_equal(server_step(None, avg, 2.0)["w"], avg["w"])  # round 1: nothing to step from
    assert server_step(prev, avg, 2.0)["w"].dtype == np.float32
    with pytest.raises(ValueError, match="same parameter names"):
        server_step({"w": np.zeros(3, np.float32)}, avg, 2.0)
    with pytest.raises(ValueError, match="server learning rate"):
        server_step(prev, avg, 0.0)


def test_the_server_strategy_takes_the_same_server_step() -> None:
    pytest.importorskip("flwr", reason="fleet learning needs Flower: pip install 'edge-cl[fleet]'")
    from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict

    from edge_cl.fleet.server_app import SampleWeightedFedAvg

    def reply(i: int, m: dict, s: int) -> Message:
        meta = Metadata(run_id=1, message_id=f"m{i}", src_node_id=i + 1, dst_node_id=1, reply_to_message_id="r",
                        group_id="1", created_at=0.0, ttl=600, message_type="train")
        return Message(content=RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in m.items()}),
                                           "metrics": MetricRecord({"num-examples": s})}), metadata=meta)

    rng = np.random.default_rng(1)
    rounds = [[{"w": rng.normal(size=4).astype(np.float32)} for _ in range(2)] for _ in range(2)]
    strategy = SampleWeightedFedAvg(server_lr=2.0)
    got = [strategy.aggregate_train(r + 1, [reply(i, m, 10 * (i + 1)) for i, m in enumerate(models)])[0]
           for r, models in enumerate(rounds)]
    first = sample_weighted_average(rounds[0], [10, 20])
    second = server_step(first, sample_weighted_average(rounds[1], [10, 20]), 2.0)
    np.testing.assert_array_equal(got[0]["w"].numpy(), first["w"])
    np.testing.assert_array_equal(got[1]["w"].numpy(), second["w"])
    with pytest.raises(ValueError, match="server learning rate"):
        SampleWeightedFedAvg(server_lr=-1.0)


def test_the_server_strategy_averages_with_the_same_function() -> None:
    pytest.importorskip("flwr", reason="fleet learning needs Flower: pip install 'edge-cl[fleet]'")
    from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict

    from edge_cl.fleet.server_app import SampleWeightedFedAvg

    rng = np.random.default_rng(0)
    models = [{"a": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
              for _ in range(3)]
    samples = [5, 20, 11]
    def reply(i: int, m: dict, s: int) -> Message:
        meta = Metadata(run_id=1, message_id=f"m{i}", src_node_id=i + 1, dst_node_id=1, reply_to_message_id="r",
                        group_id="1", created_at=0.0, ttl=600, message_type="train")
        return Message(content=RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in m.items()}),
                                           "metrics": MetricRecord({"num-examples": s})}), metadata=meta)

    replies = [reply(i, m, s) for i, (m, s) in enumerate(zip(models, samples, strict=True))]
    arrays, _ = SampleWeightedFedAvg().aggregate_train(1, replies)
    expected = sample_weighted_average(models, samples)
    for k, v in expected.items():
        np.testing.assert_array_equal(arrays[k].numpy(), v)


def test_a_round_moves_every_device_towards_the_global_model_and_costs_one_model_each_way(bench) -> None:
    lrns = learners(bench)
    learn_apart(lrns)
    before = [local_weights(lrn) for lrn in lrns]
    glob = sample_weighted_average(before, [50, 50, 50])
    up, down, returned = bench.fleet_round(lrns, [50, 50, 50], a=0.5)
    for k, v in glob.items():
        np.testing.assert_array_equal(returned[k], v)  # server lr 1: the global model is the average
    payload = len(wire.encode(glob))
    assert up == [len(wire.encode(b)) for b in before] and down == [payload] * 3
    assert max(up) <= payload and max(down) <= payload  # one model each way
    for lrn, old in zip(lrns, before, strict=True):
        new = local_weights(lrn)
        assert distance(old, glob) > 0
        # Halfway: a = 0.5 puts the device at the midpoint of its weights and the global ones.
        np.testing.assert_allclose(distance(new, glob), 0.5 * distance(old, glob), rtol=1e-4)
    bench.fleet_round(lrns, [10, 10, 10], a=1.0)
    after = [local_weights(lrn) for lrn in lrns]
    assert distance(after[0], after[1]) == 0 and distance(after[1], after[2]) == 0


def test_a_round_where_nobody_learned_changes_nothing(bench) -> None:
    lrns = learners(bench, 2)
    learn_apart(lrns)
    before = [local_weights(lrn) for lrn in lrns]
    prev = {k: np.zeros_like(v) for k, v in before[0].items()}
    _, down, glob = bench.fleet_round(lrns, [0, 0], a=1.0, server_lr=2.0, previous=prev)
    assert down == [0, 0] and glob is prev
    assert all(distance(b, local_weights(lrn)) == 0 for b, lrn in zip(before, lrns, strict=True))


def tiny_stream():
    from edge_cl.bench.streams import TaskStream

    rng = np.random.default_rng(0)
    xs = [(rng.integers(0, 255, size=(60, 12), dtype=np.uint8), rng.integers(0, 3, size=60)) for _ in range(4)]
    return TaskStream("tiny", "domain-il", 4, (12,), 3, [f"c{t}" for t in range(4)],
                      lambda t: xs[t], lambda t: xs[t])


def test_isolated_devices_learn_alone_and_fleet_devices_end_equal(bench) -> None:
    stream, own = tiny_stream(), [[0, 1], [2, 3]]
    budget = bench.device_budget(SPEC, 20)
    iso = bench.run_devices(stream, own, SPEC, budget, 0, None, 0.0)
    assert iso.rounds == 0 and iso.up_bytes == [] and iso.down_bytes == []
    # A device's isolated result does not depend on the other devices (here: on the other one being there).
    alone = bench.run_devices(stream, own[:1], SPEC, budget, 0, None, 0.0)
    assert alone.acc[0] == iso.acc[0]
    fleet = bench.run_devices(stream, own, SPEC, budget, 0, 3, 1.0)
    assert fleet.rounds == 4  # 12 steps, a round every 3
    # a = 1 and a final round: every device holds the global model (its standardiser's statistics stay its own).
    assert distance(fleet.weights[0], fleet.weights[1]) == 0
    assert distance(iso.weights[0], iso.weights[1]) > 0
    per = fleet.per_device()
    assert set(per[0]) == {"own", "transfer", "all"}


@pytest.mark.integration
@pytest.mark.skipif(not mnist_present(), reason="MNIST files not found (set EDGE_CL_DATA)")
def test_quick_run_end_to_end(bench, tmp_path) -> None:
    import json

    out = tmp_path / "fleet.json"
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--quick", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)  # the benchmark pins one thread; other tests keep theirs
    doc = json.loads(out.read_text())
    assert doc["devices"] == 4 and len(doc["fleet"]["per_device"]) == 4 and doc["chosen"] == "a=1,K=10,lr=1"
    assert doc["verdict"]["bytes"] and doc["fleet"]["up_bytes_max"] == doc["fleet"]["payload_bytes"]
    assert doc["isolated"]["rounds"] == 0 and doc["fleet"]["rounds"] > 0
    text = bench.render(doc)
    assert "Targets (issue #24)" in text and "transport is excluded" in text
