"""A method written outside the package, registered from this test module: it runs in the learner, by
name, and both its own tensor and its per-sample field are counted to the byte."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from edge_cl import OnlineLearner, methods, models
from edge_cl.methods import Draw, Method, SampleField, Step
from tests.oracles import owned_bytes

# The learner's input defaults (standardize=None, float16 storage) are not what these tests are about.
INPUTS = {"standardize": False, "storage": "float32"}


class ToyMethod(Method):
    """Stores the new samples' loss with each of them and keeps a running mean of the first layer's weight."""

    name = "toy-running-mean"
    uses_buffer = True

    def __init__(self, ctx, settings):  # type: ignore[no-untyped-def]
        super().__init__(ctx, settings)
        self.mean_weight = torch.zeros_like(ctx.params[0])

    def tensors(self) -> list[Tensor]:
        return [self.mean_weight]

    def sample_fields(self) -> dict[str, SampleField]:
        return {"loss_at_insert": SampleField((1,), torch.float16)}

    def replay_draws(self) -> Sequence[Draw]:
        return [Draw("replay", self.ctx.replay_batch, join_ce=True)]

    def sample_values(self, step: Step) -> dict[str, Tensor]:
        loss = torch.nn.functional.cross_entropy(step.logits.detach(), step.y, reduction="none")
        return {"loss_at_insert": loss.unsqueeze(1)}

    def after_update(self, step: Step) -> None:
        self.mean_weight.lerp_(self.ctx.params[0].detach(), 0.1)


class HidingMethod(ToyMethod):
    """Keeps a tensor it does not declare: the contract's byte oracle must catch it."""

    name = "toy-hiding"

    def __init__(self, ctx, settings):  # type: ignore[no-untyped-def]
        super().__init__(ctx, settings)
        self.hidden = torch.zeros(1000)


@pytest.fixture
def registered() -> Iterator[None]:
    methods.register(ToyMethod)
    methods.register(HidingMethod)
    try:
        yield
    finally:
        methods.unregister(ToyMethod.name)
        methods.unregister(HidingMethod.name)


def _learner(method: str) -> OnlineLearner:
    model = models.mlp(6, [8], 3)
    budget = OnlineLearner.required_bytes(model, buffer_samples=40, method=method, replay_batch=4, **INPUTS) + 123
    return OnlineLearner(model, budget_bytes=budget, method=method, replay_batch=4, device="cpu", **INPUTS)


def test_toy_method_runs_by_name_and_is_counted_to_the_byte(registered):
    assert "toy-running-mean" in methods.available()
    learner = _learner("toy-running-mean+ewc")
    report = learner.memory_report()
    assert report["parts"]["toy-running-mean"] == 6 * 8 * 4            # its [8, 6] float32 tensor, exactly
    assert report["buffer_field_bytes_per_sample"] == {"x": 6 * 4, "y": 1, "loss_at_insert": 2}  # 3 classes: uint8
    assert report["bytes_per_sample"] == 6 * 4 + 1 + 2
    assert report["buffer_capacity"] == 40 + 123 // (6 * 4 + 1 + 2)
    rng = np.random.default_rng(0)
    for _ in range(60):
        learner.learn(rng.standard_normal((5, 6)).astype(np.float32), rng.integers(0, 3, 5))
    report = learner.memory_report()
    assert report["buffer_fields"]["loss_at_insert"] == report["buffer_capacity"] * 2
    assert owned_bytes(learner) == report["used_bytes"] <= report["budget_bytes"]
    assert float(learner.get_method("toy-running-mean").mean_weight.abs().sum()) > 0  # its hook ran
    stored = learner.buffer.values["loss_at_insert"][: len(learner.buffer)]
    assert stored.dtype == torch.float16 and bool((stored > 0).all())  # losses were stored with the samples


def test_a_tensor_a_method_hides_is_caught_by_the_byte_oracle(registered):
    learner = _learner("toy-hiding")
    found = owned_bytes(learner)
    assert found == learner.memory_report()["used_bytes"] + 4000  # the contract test would fail on it


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ValueError, match="toy-nothing' is not a registered method; available: a-gem, .*er, .*ewc"):
        OnlineLearner(models.mlp(6, [8], 3), budget_bytes=100_000, method="er+toy-nothing")
