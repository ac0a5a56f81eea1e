"""CLS-ER: retention, the EMA copies (counted, updated towards the model), prediction by the stable copy."""

import torch

from edge_cl import models
from edge_cl.learner import OnlineLearner
from tests.methods.retention import two_tasks

# The learner's input defaults (standardize=None, float16 storage) are not what these tests are about.
INPUTS = {"standardize": False, "storage": "float32"}

FAST = {"clser_stable_decay": 0.99, "clser_plastic_decay": 0.9}  # copies that follow a 150-step stream


def test_keeps_task_one_above_fine_tuning():
    for class_il in (False, True):
        sgd0, _, _ = two_tasks("sgd", class_il=class_il)
        old, new, _ = two_tasks("cls-er", class_il=class_il, **FAST)
        assert old >= sgd0 + 0.25, (class_il, old, sgd0)
        assert new >= 0.4, (class_il, new)


def test_copies_are_counted_and_predict():
    model = models.mlp(4, [8], 3)
    learner = OnlineLearner(model, budget_bytes=200_000, method="cls-er", replay_batch=4, device="cpu", **INPUTS,
                            trigger=None)
    clser = learner.get_method("cls-er")
    n_params = sum(p.nbytes for p in model.parameters())
    assert learner.memory_report()["parts"]["cls-er"] == 2 * n_params + 2 * 8
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        learner.learn(torch.randn(4, 4, generator=gen), torch.randint(0, 3, (4,), generator=gen))
    assert int(clser.updates.sum()) > 0
    assert learner.inference_model() is clser.stable
    x = torch.randn(6, 4)
    with torch.no_grad():
        assert (learner.predict(x) == clser.stable(x).argmax(1).numpy()).all()
    for s, p in zip(clser.stable.parameters(), model.parameters()):
        assert not s.requires_grad and not torch.equal(s, p)
