"""LwF-style distillation: the trigger refreshes the teacher, whose bytes are counted; retention."""

import torch

from edge_cl import models
from edge_cl.learner import OnlineLearner
from edge_cl.methods.lwf import distill
from tests.methods.retention import two_tasks


def test_keeps_task_one_above_fine_tuning():
    for class_il in (False, True):
        sgd0, _, _ = two_tasks("sgd", class_il=class_il)
        old, new, learner = two_tasks("lwf", class_il=class_il, trigger="plateau")
        assert learner.consolidations >= 1  # the trigger, not a task id, took the teacher
        assert old >= sgd0 + 0.25, (class_il, old, sgd0)
        assert new >= 0.3


def test_teacher_is_taken_at_consolidation_and_counted():
    model = models.mlp(4, [8], 3)
    learner = OnlineLearner(model, budget_bytes=200_000, method="lwf", replay_batch=4, device="cpu", trigger=None)
    lwf = learner.get_method("lwf")
    assert learner.memory_report()["parts"]["lwf"] == sum(p.nbytes for p in model.parameters()) + 1
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    learner.learn(x, y)
    assert not bool(lwf.ready) and lwf.loss is not None
    learner.consolidate()
    assert bool(lwf.ready)
    for t, p in zip(lwf.teacher, model.parameters()):
        assert torch.equal(t, p.detach())
    learner.learn(x, y)
    assert any(not torch.equal(t, p.detach()) for t, p in zip(lwf.teacher, model.parameters()))


def test_distill_is_zero_on_equal_logits():
    z = torch.randn(5, 3)
    assert float(distill(z, z, 2.0)) < 1e-6
    assert float(distill(z, -z, 2.0)) > 0
