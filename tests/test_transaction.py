"""A step is a transaction: a method that raises in any hook leaves the learner's whole state as it was."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edge_cl import methods
from edge_cl.learner import OnlineLearner
from edge_cl.methods import Draw, Method, MethodSettings, SampleField
from edge_cl.transaction import MethodError

HOOKS = ("replay_draws", "begin_step", "before_forward", "loss", "before_update", "sample_values", "before_step", "after_update",
         "consolidate")


class RaiserSettings(MethodSettings):
    raise_in: str = ""


class Raiser(Method):
    """Replays, keeps a tensor, a per-sample field and a counter, draws randomness, and raises in ``raise_in``
    once armed."""

    name = "test-raiser"
    uses_buffer = True
    Settings = RaiserSettings

    def __init__(self, ctx: Any, settings: Any) -> None:
        super().__init__(ctx, settings)
        self.armed = False
        self.calls = torch.zeros(1)

    def _maybe(self, hook: str) -> None:
        if self.armed and self.settings.raise_in == hook:
            raise RuntimeError(f"planted failure in {hook}")

    def tensors(self) -> list[torch.Tensor]:
        return [self.calls]

    def sample_fields(self) -> dict[str, SampleField]:
        return {"seen_at": SampleField((1,))}

    def replay_draws(self) -> list[Draw]:
        self._maybe("replay_draws")
        return [Draw("raiser", self.ctx.replay_batch, join_ce=True)]

    def begin_step(self, index: int) -> None:
        self.calls += 1
        self._maybe("begin_step")

    def before_forward(self, batch: int, replayed: Any) -> None:
        self.calls += 1
        self._maybe("before_forward")

    def loss(self, step: Any) -> torch.Tensor:
        self.calls += 1
        self._maybe("loss")
        return step.logits.square().mean() * 1e-3

    def before_update(self, step: Any) -> None:
        self.calls += 1
        self._maybe("before_update")

    def sample_values(self, step: Any) -> dict[str, torch.Tensor]:
        self._maybe("sample_values")
        return {"seen_at": torch.full((step.batch, 1), float(step.index))}

    def before_step(self, step: Any) -> None:
        with torch.no_grad():
            self.ctx.params[0].mul_(0.999)  # direct weight work, as decoupled penalties do
        self._maybe("before_step")

    def after_update(self, step: Any) -> None:
        torch.rand(3, generator=self.ctx.generator)  # consumes the learner's randomness, as CLS-ER does
        self.calls += 1
        self._maybe("after_update")

    def consolidate(self) -> None:
        self.calls += 100
        self._maybe("consolidate")


class BatchNormNet(nn.Module):
    """Not an nn.Sequential, with BatchNorm running statistics that a forward changes."""

    input_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn, self.b = nn.Linear(6, 12), nn.BatchNorm1d(12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.bn(self.a(x))))


@pytest.fixture
def raiser() -> Iterator[str]:
    methods.register(Raiser)
    yield Raiser.name
    methods.unregister(Raiser.name)


def _equal(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _batches(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.normal(20.0, 5.0, (4, 6)).astype(np.float32), rng.integers(0, 3, 4)) for _ in range(n)]


@pytest.mark.parametrize("companion", ["si", "ewc", "rwalk", "scp"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("hook", HOOKS)
def test_a_method_raising_in_any_hook_leaves_the_whole_state_as_it_was(raiser, hook, optimizer, companion):
    """The raiser runs after an importance method, so a failure in its consolidate comes after the companion's
    consolidation changed omega and the anchor, which its per-step state leaves out."""
    torch.manual_seed(0)
    learner = OnlineLearner(BatchNormNet(), budget_bytes=400_000, method=f"er+{companion}+{raiser}", raise_in=hook,
                            device="cpu", standardize=True, optimizer=optimizer, lr=0.01, importance_every=1,
                            trigger_params={"window": 3})
    for i, (x, y) in enumerate(_batches(12)):
        learner.learn(x, y)
        if i == 5:
            learner.consolidate()  # a penalty in force: omega and the anchor hold values to lose
    if hook == "consolidate":
        learner.trigger.observe = lambda loss: True  # type: ignore[union-attr, method-assign]
    method = learner.get_method(raiser)
    method.armed = True
    before = copy.deepcopy(learner.state_dict())
    x, y = _batches(13)[-1]
    with pytest.raises(MethodError, match=rf"method '{raiser}' raised in {hook}: RuntimeError: planted failure"):
        learner.learn(x, y)
    _equal(learner.state_dict(), before, "state")
    # And the learner goes on as if the failed call never happened.
    method.armed = False
    stats = learner.learn(x, y)
    assert not stats.skipped and learner.step == before["counters"]["step"] + 1


def test_a_failed_step_then_the_same_steps_gives_the_same_weights(raiser):
    def run(fail: bool) -> OnlineLearner:
        torch.manual_seed(0)
        learner = OnlineLearner(BatchNormNet(), budget_bytes=400_000, method=f"er+{raiser}",
                                raise_in="after_update", device="cpu", seed=3)
        for i, (x, y) in enumerate(_batches(30)):
            if fail and i == 10:
                learner.get_method(raiser).armed = True
                with pytest.raises(MethodError):
                    learner.learn(x, y)
                learner.get_method(raiser).armed = False
            learner.learn(x, y)
        return learner

    _equal(run(True).state_dict(), run(False).state_dict(), "state")


def test_observe_failure_restores_method_state(raiser):
    class Observer(Raiser):
        name = "test-observer"

        def observe(self, x: torch.Tensor) -> bool:
            self.calls += 5
            raise ValueError("planted failure in observe")

    methods.register(Observer)
    try:
        learner = OnlineLearner(BatchNormNet(), budget_bytes=400_000, method="test-observer", device="cpu")
        before = copy.deepcopy(learner.state_dict())
        with pytest.raises(MethodError, match="method 'test-observer' raised in observe"):
            learner.observe(np.ones((2, 6), dtype=np.float32))
        _equal(learner.state_dict(), before, "state")
    finally:
        methods.unregister(Observer.name)
