"""The byte budget: sizing, refusal with figures, and the invariant over a long stream."""

from __future__ import annotations

import numpy as np
import pytest

from edge_cl import OnlineLearner, models
from edge_cl.budget import MemoryBudget
from tests.oracles import owned_bytes


def test_budget_gives_the_rest_to_the_buffer():
    budget = MemoryBudget(10_000, {"parameters": 1000, "gradients": 1000}, bytes_per_sample=100)
    assert budget.buffer_capacity == 80
    assert budget.reserved_bytes == 10_000


def test_too_small_budget_says_how_many_bytes_are_needed():
    model = models.mlp(784, [100, 100], 10)
    with pytest.raises(ValueError) as err:
        OnlineLearner(model, budget_bytes=500_000, importance="mas", replay_batch=10)
    needed = OnlineLearner.required_bytes(model, buffer_samples=10, importance="mas", replay_batch=10)
    assert f"{needed:,}" in str(err.value)
    assert "budget_bytes=500,000" in str(err.value)
    OnlineLearner(model, budget_bytes=needed, importance="mas", replay_batch=10)  # exactly enough works


def test_required_bytes_gives_exactly_the_asked_buffer():
    model = models.mlp(20, [16], 4)
    for storage, rng in (("float32", None), ("uint8", (0.0, 1.0))):
        budget = OnlineLearner.required_bytes(model, 500, importance="ewc", storage=storage, input_range=rng)
        learner = OnlineLearner(model, budget, importance="ewc", storage=storage, input_range=rng)
        assert learner.memory_report()["buffer_capacity"] == 500


def test_compact_storage_fits_more_samples_into_the_same_bytes():
    model = models.mlp(784, [100, 100], 10)
    budget = OnlineLearner.required_bytes(model, 500, importance=None, storage="float32")
    f32 = OnlineLearner(model, budget, importance=None, storage="float32")
    u8 = OnlineLearner(models.mlp(784, [100, 100], 10), budget, importance=None, storage="uint8",
                       input_range=(0.0, 1.0))
    assert f32.budget.buffer_capacity == 500
    assert u8.budget.buffer_capacity > 3.5 * 500


def test_no_replay_means_no_buffer():
    learner = OnlineLearner(models.mlp(8, [4], 2), 10_000_000, importance=None, replay_batch=0)
    assert learner.memory_report()["buffer_capacity"] == 0
    assert learner.memory_report()["buffer_bytes"] == 0


def test_report_counts_every_part():
    learner = OnlineLearner(models.mlp(784, [100, 100], 10), 2_000_000, importance="mas", replay_batch=10,
                            storage="float32")
    report = learner.memory_report()
    for key in ("budget_bytes", "used_bytes", "buffer_capacity", "buffer_size", "parts"):
        assert key in report
    n_params = 89_610
    assert report["parameters_bytes"] == report["gradients_bytes"] == n_params * 4
    assert report["mas_bytes"] == 3 * n_params * 4  # omega, running estimate, anchor: one part per method
    assert report["parts"]["mas"] == 3 * n_params * 4 and "er" in report["parts"]
    # Ten classes: one byte a label (uint8), not int64's eight.
    assert report["buffer_fields"] == {"x": report["buffer_capacity"] * 784 * 4, "y": report["buffer_capacity"] * 1}
    assert report["buffer_bytes"] == report["buffer_capacity"] * (784 * 4 + 1)
    assert report["used_bytes"] == sum(report["parts"].values()) <= report["budget_bytes"]


@pytest.mark.slow
def test_owned_bytes_never_exceed_the_budget_over_100k_samples():
    """Streams 100k samples; at every step the tensors reachable from the learner fit the budget and
    equal the reported used_bytes. Adam's lazily created state is part of what is checked."""
    rng = np.random.default_rng(0)
    dim, classes, batch = 16, 4, 50
    model = models.mlp(dim, [32], classes)
    budget = OnlineLearner.required_bytes(model, 300, importance="mas", optimizer="adam") + 777
    learner = OnlineLearner(model, budget, importance="mas", replay_batch=20, optimizer="adam",
                            importance_every=5, lr=0.01, class_balanced=False)
    xs = rng.standard_normal((100_000, dim)).astype(np.float32)
    ys = rng.integers(0, classes, 100_000)
    for start in range(0, 100_000, batch):
        learner.learn(xs[start:start + batch], ys[start:start + batch])
        owned = owned_bytes(learner)
        report = learner.memory_report()
        assert owned == report["used_bytes"] <= budget, f"at sample {start}: owned {owned}, report {report}"
    # The default float16 storage, uint8 labels.
    assert learner.memory_report()["buffer_size"] == 300 + 777 // (dim * 2 + 1)
    assert learner.samples_learned == 100_000
