"""SCP: the sliced distance against a direct computation, the importance against slow per-slice gradients."""

import numpy as np
import torch

from edge_cl import OnlineLearner, models
from edge_cl.methods.base import MethodContext
from edge_cl.methods.scp import SCPSettings, SlicedCramerPreservation, sliced_distance


def _scp(model, slices=4):
    ctx = MethodContext(model=model, params=list(model.parameters()), device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0), num_classes=3, input_dim=6, lr=0.1,
                        optimizer="sgd", replay_batch=0)
    return SlicedCramerPreservation(ctx, SCPSettings(scp_slices=slices, importance_normalize=False))


def test_sliced_distance_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    dirs = rng.standard_normal((5, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    direct = np.mean([(np.mean(b @ d) - np.mean(a @ d)) ** 2 for d in dirs])
    got = sliced_distance(torch.tensor(a), torch.tensor(b), torch.tensor(dirs))
    assert abs(float(got) - direct) < 1e-12


def test_importance_is_mean_squared_sliced_gradient_and_the_distance_curvature():
    torch.manual_seed(0)
    model = models.mlp(6, [5], 3)
    scp = _scp(model, slices=4)
    x = torch.randn(9, 6)
    state = scp.generator.get_state()
    got = scp.estimate(x, None)
    scp.generator.set_state(state)
    dirs = scp.directions(3, torch.device("cpu"))
    slow = [torch.zeros_like(p) for p in model.parameters()]
    for d in dirs:                                           # one backward per slice
        model.zero_grad()
        (model(x).mean(0) @ d).backward()
        for s, p in zip(slow, model.parameters()):
            s += p.grad.pow(2) / len(dirs)
    for g, s in zip(got, slow):
        torch.testing.assert_close(g, s)
    # sum Gamma delta^2 is the sliced distance's second-order term: moving one weight by h changes the
    # distance by Gamma_i h^2 (up to O(h^3)).
    with torch.no_grad():
        before = model(x)
        w = next(model.parameters())
        h = 1e-3
        w[0, 0] += h
        after = model(x)
    dist = float(sliced_distance(before.double(), after.double(), dirs.double()))
    assert abs(dist - float(got[0][0, 0]) * h * h) <= 1e-3 * float(got[0][0, 0]) * h * h + 1e-12


def test_scp_uses_buffer_samples_in_the_learner():
    torch.manual_seed(0)
    model = models.mlp(8, [16], 3)
    learner = OnlineLearner(model, budget_bytes=OnlineLearner.required_bytes(model, 50, method="er+scp"),
                            method="er+scp", lr=0.1, device="cpu", trigger_params={"window": 5})
    stats = [learner.learn(torch.randn(10, 8), torch.randint(0, 3, (10,))) for _ in range(40)]
    scp = learner.get_method("scp")
    assert scp.updates == 4 and scp.steps == 40
    # Every tenth step draws importance_samples buffered rows besides ER's replay draw.
    assert [s.replay_size for s in stats[9::10]][1:] == [20, 20, 20]
    assert stats[10].replay_size == 10
