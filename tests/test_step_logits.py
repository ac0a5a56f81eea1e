"""The learn step's own logits as the test-then-train prediction (issue #27): equal to a separate predict where
the learner claims it (every model of the zoo without train-mode behaviour, both step engines), and a reason
given where they are not the same (Dropout, BatchNorm, the input standardiser), which really do differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner
from tests import model_zoo

DIM, CLASSES = 12, 4


def learner_for(model: torch.nn.Module, **options: object) -> OnlineLearner:
    settings: dict[str, object] = {"method": "er", "replay_batch": 6, "lr": 0.05, "seed": 3, "device": "cpu",
                                   "standardize": False, **options}
    return OnlineLearner(model, budget_bytes=400_000, **settings)


def batches(seed: int, n: int, rows: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(rows, DIM)).astype(np.float32), rng.integers(0, CLASSES, rows)) for _ in range(n)]


def compare(learner: OnlineLearner, steps: int = 12) -> list[float]:
    """Largest |softmax(step logits) - predict_proba| per step, the prediction taken just before the step."""
    gaps = []
    for x, y in batches(1, steps):
        before = learner.predict_proba(x)
        stats = learner.learn(x, y, keep_logits=True)
        assert stats.logits is not None and tuple(stats.logits.shape) == (len(x), CLASSES)
        got = torch.softmax(stats.logits, 1).numpy()
        gaps.append(float(np.abs(got - before).max()))
        if learner.step_logits_differ() is None:
            assert (got.argmax(1) == before.argmax(1)).all()
    return gaps


@pytest.mark.parametrize("name", ["mlp", "cnn1d", "gru", "lstm", "two_branch"])
def test_step_logits_equal_a_separate_predict_where_claimed(name: str) -> None:
    learner = learner_for(model_zoo.build(name, DIM, CLASSES))
    x, y = batches(0, 1)[0]
    learner.learn(x, y)  # the first batch decides the storage; from then on the claim holds
    assert learner.step_logits_differ() is None
    gaps = compare(learner)
    assert max(gaps) < 1e-5, gaps


def test_both_step_engines_give_the_prediction() -> None:
    """The Linear/ReLU closed form and autograd (a forward hook turns the closed form off)."""
    for hooked in (False, True):
        learner = learner_for(model_zoo.build("mlp", DIM, CLASSES))
        if hooked:
            learner.model.register_forward_hook(lambda module, args, out: None)
        x, y = batches(0, 1)[0]
        learner.learn(x, y)
        assert learner.step_logits_differ() is None
        assert max(compare(learner)) < 1e-5


def test_importance_method_with_label_free_observe() -> None:
    learner = learner_for(model_zoo.build("mlp", DIM, CLASSES), method="er+mas", importance_every=1)
    x, y = batches(0, 1)[0]
    learner.learn(x, y)
    learner.observe(x)
    assert learner.step_logits_differ() is None
    assert max(compare(learner)) < 1e-5


@pytest.mark.parametrize(("name", "options", "words"), [
    ("layernorm_dropout", {}, "Dropout"),
    ("conv_bn", {}, "BatchNorm1d"),
    ("mlp", {"standardize": True}, "standardiser"),
])
def test_train_mode_models_and_the_standardiser_are_refused_and_really_differ(name: str, options: dict,
                                                                               words: str) -> None:
    learner = learner_for(model_zoo.build(name, DIM, CLASSES), **options)
    x, y = batches(0, 1)[0]
    learner.learn(x, y)
    reason = learner.step_logits_differ()
    assert reason is not None and words in reason, reason
    assert max(compare(learner)) > 1e-4  # the refusal is needed: a separate predict gives other values


def test_the_first_batch_and_other_predictors_are_refused() -> None:
    fresh = learner_for(model_zoo.build("mlp", DIM, CLASSES), storage="auto")
    assert "first batch" in str(fresh.step_logits_differ())
    ncm = learner_for(model_zoo.build("mlp", DIM, CLASSES), predict="ncm")
    x, y = batches(0, 1)[0]
    ncm.learn(x, y)
    assert "ncm" in str(ncm.step_logits_differ())
    cls_er = learner_for(model_zoo.build("mlp", DIM, CLASSES), method="cls-er")
    cls_er.learn(x, y)
    assert "own" in str(cls_er.step_logits_differ())


def test_no_logits_unless_asked_and_replay_scales_one_step() -> None:
    learner = learner_for(model_zoo.build("mlp", DIM, CLASSES))
    for x, y in batches(0, 4):
        assert learner.learn(x, y).logits is None
    x, y = batches(5, 1)[0]
    assert learner.learn(x, y, replay=20).replay_size == 20
    assert learner.learn(x, y).replay_size == 6  # back to replay_batch
    with pytest.raises(ValueError, match="replay=-1"):
        learner.learn(x, y, replay=-1)
