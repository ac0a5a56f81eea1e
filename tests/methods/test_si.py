"""SI's path integral against a hand-computed two-step example."""

import pytest
import torch
from torch import nn

from edge_cl import OnlineLearner, models
from edge_cl.methods.base import MethodContext, Step
from edge_cl.methods.si import SISettings, SynapticIntelligence


class _Scalar(nn.Module):
    """logit = [w * x, 0]: one parameter, so the path integral can be written by hand."""

    input_dim = 1

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5]))

    def forward(self, x):
        return torch.cat([self.w * x, torch.zeros_like(x)], dim=1)


def _si(model, lr, **kw):
    ctx = MethodContext(model=model, params=list(model.parameters()), device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0), num_classes=2, input_dim=1, lr=lr,
                        optimizer="sgd", replay_batch=0)
    return SynapticIntelligence(ctx, SISettings(importance_lambda=1.0, importance_normalize=False, **kw))


def test_path_integral_two_steps_by_hand():
    model, lr, xi = _Scalar(), 0.1, 0.01
    si = _si(model, lr, si_xi=xi, importance_gamma=0.5)
    w0 = float(model.w.detach())
    grads = [0.3, -0.1]          # gradient of the loss at each of the two steps
    expected_w = 0.0
    step = Step(index=0, x=torch.zeros(1, 1), y=torch.zeros(1, dtype=torch.long), logits=torch.zeros(1, 2))
    for g in grads:
        model.w.grad = torch.tensor([g])
        si.before_update(step)                  # remembers theta before the step
        with torch.no_grad():
            model.w -= lr * model.w.grad        # plain SGD: delta = -lr g
        si.after_update(step)
        expected_w += -g * (-lr * g)            # -g * delta = lr g^2
    assert expected_w == pytest.approx(0.1 * 0.09 + 0.1 * 0.01)
    assert float(si.current[0]) == pytest.approx(expected_w, rel=1e-6)
    moved = float(model.w.detach()) - w0                 # -lr (0.3 - 0.1) = -0.02
    assert moved == pytest.approx(-0.02, abs=1e-7)
    si.consolidate()
    assert float(si.omega[0]) == pytest.approx(expected_w / (moved ** 2 + xi), rel=1e-5)
    assert float(si.anchor[0]) == float(model.w.detach()) and float(si.current[0]) == 0.0
    # A second window decays the first: omega <- gamma omega + w / (delta^2 + xi); negative w counts as 0.
    first = float(si.omega[0])
    model.w.grad = torch.tensor([0.2])
    si.before_update(step)
    with torch.no_grad():
        model.w += 0.01                         # a move against the gradient: -g delta < 0
    si.after_update(step)
    si.consolidate()
    assert float(si.omega[0]) == pytest.approx(0.5 * first, rel=1e-5)


def test_si_in_the_learner_consolidates_and_penalises():
    torch.manual_seed(0)
    model = models.mlp(8, [16], 3)
    learner = OnlineLearner(model, budget_bytes=OnlineLearner.required_bytes(model, 50, method="er+si"),
                            method="er+si", lr=0.1, device="cpu", trigger_params={"window": 5})
    for i in range(80):
        x = torch.randn(10, 8)
        learner.learn(x, (x[:, 0] > 0).long() + (i >= 40))
    si = learner.get_method("si")
    assert learner.consolidations > 0 and si.active
    assert sum(float(o.sum()) for o in si.omega) > 0
    assert learner.memory_report()["parts"]["si"] == 4 * sum(p.nbytes for p in model.parameters())
