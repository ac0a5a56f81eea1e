"""ER-ACE: retention in a class-incremental stream, and the asymmetric mask."""

import torch
import torch.nn.functional as F

from edge_cl import models
from edge_cl.learner import OnlineLearner
from tests.methods.retention import two_tasks


def test_keeps_old_classes_above_fine_tuning():
    sgd0, _, _ = two_tasks("sgd", class_il=True)
    old, new, _ = two_tasks("er-ace", class_il=True)
    assert old >= sgd0 + 0.4, (old, sgd0)
    assert new >= 0.8


def test_domain_incremental_retention():
    sgd0, _, _ = two_tasks("sgd")
    old, new, _ = two_tasks("er-ace")
    assert old >= sgd0 + 0.2 and new >= 0.6


def test_mask_hides_only_seen_classes_absent_from_the_batch():
    learner = OnlineLearner(models.mlp(4, [8], 5), budget_bytes=100_000, method="er-ace", replay_batch=4,
                            device="cpu", trigger=None)
    ace = learner.get_method("er-ace")
    learner.learn(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))
    assert ace.seen.tolist() == [True, True, True, False, False]
    logits = torch.randn(2, 5, requires_grad=True)
    masked = ace.masked_logits(logits, torch.tensor([1, 3]))
    hidden = masked <= torch.finfo(masked.dtype).min
    assert hidden.any(0).tolist() == [True, False, True, False, False]
    # The new rows' gradient never pushes a hidden class (its softmax weight is zero).
    F.cross_entropy(masked, torch.tensor([1, 3])).backward()
    assert logits.grad[:, [0, 2]].abs().max() == 0
