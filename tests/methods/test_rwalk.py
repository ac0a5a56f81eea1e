"""RWalk: the moving-average Fisher against a slow loop, the path score, consolidation."""

import pytest
import torch
import torch.nn.functional as F

from edge_cl import OnlineLearner, models
from edge_cl.methods.base import MethodContext, Step
from edge_cl.methods.rwalk import RWalk, RWalkSettings


def _rwalk(model, alpha=0.7, **kw):
    params = list(model.parameters())
    ctx = MethodContext(model=model, params=params, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0), num_classes=3, input_dim=6, lr=0.1,
                        optimizer="adam", replay_batch=0)  # adam: no omega cap, so omega is F + s exactly
    return RWalk(ctx, RWalkSettings(rwalk_alpha=alpha, importance_normalize=False, **kw))


def test_fisher_ema_and_path_score_match_a_slow_loop():
    torch.manual_seed(0)
    model = models.mlp(6, [5], 3)
    alpha, lr, eps = 0.7, 0.1, 1e-8
    rw = _rwalk(model, alpha=alpha, rwalk_eps=eps)
    fisher = [torch.zeros_like(p) for p in model.parameters()]
    score = [torch.zeros_like(p) for p in model.parameters()]
    step = Step(index=0, x=torch.zeros(1, 6), y=torch.zeros(1, dtype=torch.long), logits=torch.zeros(1, 3))
    for _ in range(5):
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        before = [p.detach().clone() for p in model.parameters()]
        rw.before_update(step)
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        rw.after_update(step)
        for i, (g, b, p) in enumerate(zip(grads, before, model.parameters())):
            fisher[i] = alpha * fisher[i] + (1 - alpha) * g * g            # EWC++, written out
            d = p.detach() - b
            score[i] = score[i] + torch.clamp(-g * d, min=0) / (0.5 * fisher[i] * d * d + eps)
    for mine, slow in zip(rw.fisher, fisher):
        torch.testing.assert_close(mine, slow)
    for mine, slow in zip(rw.current, score):
        torch.testing.assert_close(mine, slow, rtol=1e-4, atol=1e-6)
    rw.consolidate()
    for o, f, s in zip(rw.omega, fisher, score):
        torch.testing.assert_close(o, f + s, rtol=1e-4, atol=1e-6)
    assert all(float(c.abs().sum()) == 0 for c in rw.current)


def test_rwalk_in_the_learner_and_state_roundtrip():
    torch.manual_seed(0)
    model = models.mlp(8, [16], 3)
    learner = OnlineLearner(model, budget_bytes=OnlineLearner.required_bytes(model, 50, method="er+rwalk"),
                            method="er+rwalk", lr=0.1, device="cpu", trigger_params={"window": 5})
    for i in range(60):
        x = torch.randn(10, 8)
        learner.learn(x, (x[:, 0] > 0).long() + (i >= 30))
    rw = learner.get_method("rwalk")
    assert rw.active
    state = rw.state_dict()
    other = _rwalk(model)
    other.load_state_dict(state)
    # The learner pulls the weights and keeps omega in the pull's units; a standalone method keeps it plain.
    for a, b in zip(other.importance_values(), rw.importance_values()):
        torch.testing.assert_close(a, b)
    for a, b in zip(other.tensors()[len(rw.omega):], rw.tensors()[len(rw.omega):]):
        assert torch.equal(a, b)
    assert learner.memory_report()["parts"]["rwalk"] == pytest.approx(5 * sum(p.nbytes for p in model.parameters()))
