"""The learner's step without autograd on Linear/ReLU models (edge_cl.relu_chain): the same bits as autograd."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edge_cl import OnlineLearner, methods, models
from edge_cl.methods import register
from edge_cl.methods.der import DER
from edge_cl.methods.lwf import distill, distill_grad
from edge_cl.relu_chain import ReLUChain, cross_entropy_grad, mse_grad, per_sample_cross_entropy_grad

# Methods whose terms have a gradient at the trunk's features rather than at the logits (contexts: replay through each
# sample's own context head; pnn: its columns are a network of their own): they read a layer's input with autograd, so
# their learner steps on autograd.
AUTOGRAD_ONLY = {"contexts", "pnn"}
CASES = [m for m in methods.available() if m not in AUTOGRAD_ONLY] + ["er+ewc", "er+mas", "der++ + ewc", "er+si"]


def _learner(method: str, standardize: bool = False, chain: bool = True, model: nn.Module | None = None,
             **options) -> OnlineLearner:
    torch.manual_seed(0)
    learner = OnlineLearner(model or models.mlp(12, [16, 8], 3), 80_000, method=method, replay_batch=6, lr=0.2,
                            seed=0, standardize=standardize, input_dim=12, **options)
    if not chain:
        learner._use_chain(False)
    return learner


@pytest.mark.parametrize("method", sorted(AUTOGRAD_ONLY))
def test_methods_that_need_autograd_step_on_it(method):
    assert _learner(method)._chain is None


def _run(learner: OnlineLearner, steps: int = 300, scale: float = 1.0) -> list[float]:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(12, 3))
    losses = []
    for i in range(steps):
        x = rng.normal(size=(int(rng.integers(1, 13)), 12)).astype(np.float32) * scale
        losses.append(learner.learn(x, (x @ w).argmax(1)).loss)
        if i == 100:
            learner.consolidate()
    return losses


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("method", CASES)
def test_the_chain_step_is_the_autograd_step_bit_for_bit(method, standardize):
    fast, slow = _learner(method, standardize), _learner(method, standardize, chain=False)
    assert fast._chain is not None, method  # every registered method gives its logit gradients
    scale = 30.0 if standardize else 1.0
    assert _run(fast, scale=scale) == _run(slow, scale=scale)
    for a, b in zip(fast.params, slow.params, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(fast.buffer.x, slow.buffer.x)
    for name in fast.buffer.values:
        assert torch.equal(fast.buffer.values[name], slow.buffer.values[name])


def test_importance_captures_from_the_chain_forward(monkeypatch):
    """EWC's in-step estimate takes the layer inputs the chain step hands over: no estimate after the step."""
    learner = _learner("er+ewc")
    assert learner._chain is not None
    ewc = learner.get_method("ewc")
    monkeypatch.setattr(ewc, "update", lambda *a: pytest.fail("the estimate ran after the step"))
    _run(learner, steps=40)
    assert ewc.updates == 4


@pytest.mark.parametrize("make", [
    lambda: models.mlp(12, [16], 3, activation="gelu"),
    lambda: nn.Sequential(nn.Linear(12, 16), nn.ReLU(inplace=True), nn.Linear(16, 3)),
    lambda: nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3)),
    lambda: nn.Sequential(nn.Linear(12, 16), nn.ReLU()),
])
def test_other_models_keep_autograd(make):
    learner = _learner("er", model=make())
    assert learner._chain is None
    _run(learner, steps=5)


def test_a_model_with_hooks_or_frozen_layers_keeps_autograd():
    model = models.mlp(12, [16], 3)
    model.body[0].register_forward_hook(lambda *a: None)
    assert _learner("er", model=model)._chain is None
    model = models.mlp(12, [16], 3)
    model.body[0].weight.requires_grad_(False)
    assert ReLUChain.of(model, [p for p in model.parameters() if p.requires_grad]) is None
    plain = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    assert _learner("er", model=plain)._chain is not None


def test_a_method_with_a_loss_and_no_logit_grads_takes_the_chain_with_autograds_gradient():
    """A subclass that changes the loss without giving its gradient at the logits must not run its parent's
    logit_grads: the chain derives the gradient from its loss (edge_cl.step_engines.derived_grads)."""

    @register
    class ScaledDER(DER):
        name = "scaled-der-test"
        Settings: ClassVar = DER.Settings

        def loss(self, step):
            term = super().loss(step)
            return None if term is None else 3.0 * term

    try:
        chain, eager = _learner("scaled-der-test"), _learner("scaled-der-test", chain=False)
        assert chain._chain is not None and eager._chain is None
        _run(chain, steps=60)
        _run(eager, steps=60)
        for a, b in zip(chain.params, eager.params, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        # And it is not DER's own update: the scaled term moved the weights elsewhere.
        plain = _learner("der")
        _run(plain, steps=60)
        assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(chain.params, plain.params, strict=True))
    finally:
        methods.unregister("scaled-der-test")


class _LossOnly(methods.Method):
    """A method written as its loss alone: a logit penalty on the new rows and an L2 pull on the weights (a
    term that reaches the weights without passing through the logits)."""

    name = "loss-only-test"
    uses_buffer = True

    def replay_draws(self):
        return [methods.Draw("loss-only", self.ctx.replay_batch, join_ce=True)]

    def loss(self, step):
        return 0.05 * step.logits.square().mean() + 1e-3 * sum(p.square().sum() for p in self.ctx.params)


@pytest.mark.parametrize("standardize", [False, True])
def test_a_method_that_defines_only_loss_runs_on_every_engine(standardize):
    register(_LossOnly)
    try:
        chain = _learner("loss-only-test", standardize=standardize)
        eager = _learner("loss-only-test", standardize=standardize, chain=False)
        fixed = _learner("loss-only-test", standardize=standardize, step_mode="fixed")
        assert chain._chain is not None and chain.step_path == "eager"
        # Its loss is device work on fixed shapes: the fixed-shape step runs it too, with no other code.
        assert fixed.step_path == "fixed"
        for learner in (chain, eager, fixed):
            losses = _run(learner, steps=120)
            assert np.mean(losses[-20:]) < np.mean(losses[:20])
        for a, b in zip(chain.params, eager.params, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    finally:
        methods.unregister(_LossOnly.name)


def test_head_gradients_are_autograds():
    torch.manual_seed(0)
    logits = torch.randn(9, 5) * 4
    y = torch.randint(0, 5, (9,))
    target = torch.randn(9, 5)
    for fn, ours in [
        (lambda z: F.cross_entropy(z, y, reduction="none").mean(),
         lambda z: per_sample_cross_entropy_grad(torch.log_softmax(z, 1), y)),
        (lambda z: 0.7 * F.cross_entropy(z, y), lambda z: cross_entropy_grad(torch.log_softmax(z, 1), y, 0.7)),
        (lambda z: 0.5 * F.mse_loss(z, target), lambda z: mse_grad(z, target, 0.5)),
        (lambda z: 0.3 * distill(z, target, 2.0), lambda z: distill_grad(z, target, 2.0, 0.3)),
    ]:
        leaf = logits.clone().requires_grad_()
        (expected,) = torch.autograd.grad(fn(leaf), leaf)
        assert torch.equal(ours(logits), expected)


def test_a_hook_added_later_is_called_and_the_step_stays_right():
    """The chain would skip a module's forward hook: once one is added, steps go through the modules again (same
    parameters as the autograd learner's), and EWC's estimate still happens."""
    fast, slow = _learner("er+ewc"), _learner("er+ewc", chain=False)
    calls = []
    fast.model.body[0].register_forward_hook(lambda *a: calls.append(1))
    assert _run(fast, steps=60) == _run(slow, steps=60)
    assert len(calls) >= 60
    for a, b in zip(fast.params, slow.params, strict=True):
        assert torch.equal(a, b)
    assert fast.get_method("ewc").updates == slow.get_method("ewc").updates == 6
    assert fast._chain is None  # for good: the in-step estimate takes the hooks' path again
