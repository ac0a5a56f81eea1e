"""A-GEM: the projection's oracle properties, and the learner's projected step."""

import torch

from edge_cl import OnlineLearner, models
from edge_cl.methods.agem import project


def _dot(a, b):
    return sum(float((x * y).sum()) for x, y in zip(a, b))


def test_projected_gradient_never_conflicts_with_the_reference():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        g = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
        r = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
        before = [t.clone() for t in g]
        project(g, r)
        if _dot(before, r) >= 0:
            for a, b in zip(g, before):
                assert torch.equal(a, b)      # they agree: the gradient is left as it is
        else:
            assert abs(_dot(g, r)) < 1e-4      # projected onto the plane orthogonal to the reference
            # g - (g.r / r.r) r, written out
            coef = _dot(before, r) / _dot(r, r)
            for a, b, rr in zip(g, before, r):
                torch.testing.assert_close(a, b - coef * rr)
        assert _dot(g, r) >= -1e-4


def test_learner_step_projects_against_the_replayed_gradient():
    torch.manual_seed(0)
    model = models.mlp(8, [16], 3)
    learner = OnlineLearner(model, budget_bytes=OnlineLearner.required_bytes(model, 50, method="a-gem"),
                            method="a-gem", lr=0.1, device="cpu", trigger=None)
    for _ in range(10):
        x = torch.randn(10, 8)
        learner.learn(x, (x[:, 0] > 0).long())
    agem = learner.get_method("a-gem")
    assert agem.projections == 9           # the first step has an empty buffer, so no reference
    # The reference tensor holds the cross-entropy gradient on the drawn rows.
    x, y = torch.randn(10, 8), torch.full((10,), 2)
    learner.learn(x, y)
    assert _dot([p.grad for p in learner.params], agem.ref) >= -1e-6
    assert learner.memory_report()["parts"]["a-gem"] == sum(p.nbytes for p in model.parameters())
