"""benchmarks/experiments/exact_fisher.py: the exact-Fisher EWC that issue #10's validation compares (a bench
plugin, not a shipped method): its estimate against a per-sample, per-class loop, and that it learns by name."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edge_cl import OnlineLearner, methods, models

EXPERIMENTS = Path(__file__).resolve().parents[2] / "benchmarks" / "experiments"


@pytest.fixture
def exact_fisher(monkeypatch):
    """The plugin module, imported as ``--plugins exact_fisher`` does, and its method unregistered afterwards so
    registry-wide suites do not see it."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    sys.modules.pop("exact_fisher", None)
    module = importlib.import_module("exact_fisher")
    yield module
    methods.unregister("ewc-exact")
    sys.modules.pop("exact_fisher", None)


def _slow_exact_fisher(model, x):
    """sum_i sum_c p(c|x_i) (d log p(c|x_i) / d theta)^2 / n, one autograd call per sample and class."""
    totals = [torch.zeros_like(p) for p in model.parameters()]
    for xi in x:
        p = torch.softmax(model(xi[None]), 1)[0].detach()
        for c in range(p.shape[0]):
            grads = torch.autograd.grad(torch.log_softmax(model(xi[None]), 1)[0, c], list(model.parameters()))
            for t, g in zip(totals, grads):
                t += p[c] * g * g
    return [t / x.shape[0] for t in totals]


@pytest.mark.parametrize("hidden", [[7], [6, 5]])
def test_estimate_is_the_exact_fisher_by_a_slow_loop(exact_fisher, hidden):
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    width = 5
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    model = nn.Sequential(*layers, nn.Linear(width, 3))
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    est = exact_fisher.ExactFisherEWC.standalone(model, lam=1.0).estimate(x, y)
    for got, want in zip(est, _slow_exact_fisher(model, x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # It is not the empirical Fisher (edge_cl's ewc), which takes only the sample's own label.
    empirical = methods.get("ewc").standalone(model, lam=1.0).estimate(x, y)
    assert not torch.allclose(est[0], empirical[0])


def test_er_plus_exact_fisher_ewc_learns_and_consolidates_by_name(exact_fisher):
    rng = np.random.default_rng(0)
    learner = OnlineLearner(models.mlp(4, [8], 2), budget_bytes=200_000,
                            method="er+ewc-exact", replay_batch=4, lr=0.1, seed=0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    for i in range(0, 200, 4):
        learner.learn(x[i:i + 4], y[i:i + 4])
    learner.consolidate()
    ewc = learner.methods[-1]
    assert ewc.updates > 0 and ewc.consolidations == 1
    assert float(sum(o.sum() for o in ewc.omega)) > 0
    hits = sum(learner.learn(x[i:i + 4], y[i:i + 4]).new_correct for i in range(200, 400, 4))
    assert hits / 200 > 0.8
