"""LwF-style distillation: the trigger refreshes the teacher, whose bytes are counted; retention."""

import copy

import pytest
import torch

from edge_cl import models
from edge_cl.learner import OnlineLearner
from edge_cl.methods.base import Step
from edge_cl.methods.lwf import distill
from tests.methods.retention import two_tasks

# The learner's input defaults (standardize=None, float16 storage) are not what these tests are about.
INPUTS = {"standardize": False, "storage": "float32"}


def test_keeps_task_one_above_fine_tuning():
    for class_il in (False, True):
        sgd0, _, _ = two_tasks("sgd", class_il=class_il)
        old, new, learner = two_tasks("lwf", class_il=class_il, trigger="plateau")
        assert learner.consolidations >= 1  # the trigger, not a task id, took the teacher
        assert old >= sgd0 + 0.25, (class_il, old, sgd0)
        assert new >= 0.3


def test_teacher_is_taken_at_consolidation_and_counted():
    model = models.mlp(4, [8], 3)
    learner = OnlineLearner(model, budget_bytes=200_000, method="lwf", replay_batch=4, device="cpu", trigger=None,
                            **INPUTS)
    lwf = learner.get_method("lwf")
    assert learner.memory_report()["parts"]["lwf"] == sum(p.nbytes for p in model.parameters()) + 1
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    learner.learn(x, y)
    assert not bool(lwf.ready)
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


@pytest.mark.parametrize("bn", [False, True])
def test_the_loss_distills_the_teacher_taken_at_consolidation(bn):
    """Before a consolidation there is no term; after it, the term is alpha * distill(student, teacher) with the
    teacher's logits those of the model as it was then (in eval mode), not the live model's -- which would give 0
    -- and the teacher's state is not changed by computing them (a BatchNorm teacher once overwrote its running
    statistics with each batch's)."""
    torch.manual_seed(0)
    body = [torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)] if bn else \
        [torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)]
    model = torch.nn.Sequential(*body)
    learner = OnlineLearner(model, budget_bytes=200_000, method="lwf", replay_batch=4, device="cpu", trigger=None, **INPUTS,
                            input_dim=4, lwf_alpha=0.7, lwf_temperature=3.0, lr=0.5)
    lwf = learner.get_method("lwf")
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(3):
        learner.learn(x, y)
    assert lwf.loss(Step(index=3, x=x, y=y, logits=model(x))) is None  # no teacher yet
    learner.consolidate()
    frozen = copy.deepcopy(model).eval()
    teacher_state = [t.clone() for t in lwf.teacher]
    for _ in range(5):
        learner.learn(torch.randn(6, 4) * 2, y)
    student = model(x)
    term = lwf.loss(Step(index=8, x=x, y=y, logits=student))
    with torch.no_grad():
        expected = 0.7 * distill(student, frozen(x), 3.0)
    assert float(expected) > 1e-4  # the model moved away from the teacher: a live-model teacher would give 0
    torch.testing.assert_close(term, expected, rtol=1e-5, atol=1e-7)
    for before, after in zip(teacher_state, lwf.teacher, strict=True):
        assert torch.equal(before, after)
