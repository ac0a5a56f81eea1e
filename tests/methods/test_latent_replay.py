"""Latent replay (edge_cl.methods.latent_replay): the lower part freezes for good, the buffer holds its outputs and
not inputs, every byte is counted, a resume is bit-identical, and replay keeps old classes.

The contract suite (tests/methods/test_contract.py, test_model_axis.py) covers the budget, seeding, skips and the
refusal of models that are not a Linear chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner, models
from tests.methods.test_gen_replay import _blobs, _draw, old_classes_kept
from tests.oracles import assert_resumes_bit_identically

DIM, CLASSES, HIDDEN = 16, 4, 32


def _learner(method: str = "latent-replay", **kw: object) -> OnlineLearner:
    torch.manual_seed(0)
    options = {"latent_warmup": 100, "latent_samples": 300} if method == "latent-replay" else {}
    return OnlineLearner(models.mlp(DIM, [HIDDEN, HIDDEN], CLASSES), 400_000, method=method, device="cpu", seed=0,
                         standardize=False, lr=0.05, **(options | kw))


def _stream(seed: int, n: int, classes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    means, axes = _blobs(1)
    rng = np.random.default_rng(seed)
    return [_draw(rng, means, axes, classes, 10) for _ in range(n)]


@pytest.mark.parametrize("optimizer", [{}, {"optimizer": "sgd", "momentum": 0.9}])
def test_the_lower_part_is_bit_identical_after_the_warm_up(optimizer: dict[str, object]) -> None:
    learner = _learner(**optimizer)
    first = learner.model.body[0] if hasattr(learner.model, "body") else learner.model[0]
    data = _stream(0, 60, list(range(CLASSES)))
    for x, y in data[:10]:  # 100 samples: the warm-up
        learner.learn(x, y)
    frozen = [p.detach().clone() for p in first.parameters()]
    above = [p.detach().clone() for p in learner.model.parameters()][2:]
    for x, y in data[10:]:
        learner.learn(x, y)
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), frozen, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(list(learner.model.parameters())[2:], above, strict=True))


def test_it_keeps_the_frozen_parts_outputs_not_inputs_and_counts_its_bytes() -> None:
    learner = _learner()
    method = learner.methods[0]
    report = learner.memory_report()
    assert report["buffer_capacity"] == 0
    assert report["parts"]["latent-replay"] == 300 * HIDDEN * 2 + 300 * 2 + 2 * 8  # float16 rows, int16 labels
    data = _stream(1, 40, list(range(CLASSES)))
    for x, y in data:
        learner.learn(x, y)
    assert method.stored == 300 and method.latents.shape == (300, HIDDEN)
    # every stored row is the frozen part's output of a sample seen after the freeze, with that sample's label
    xs = np.concatenate([x for x, _ in data[10:]])
    ys = np.concatenate([y for _, y in data[10:]])
    outputs = method.latent(torch.from_numpy(xs)).half()
    for row, label in zip(method.latents[:20], method.labels[:20], strict=True):
        hit = (outputs == row).all(1).nonzero().flatten().tolist()
        assert hit and int(label) in {int(ys[i]) for i in hit}


def test_a_resume_is_bit_identical(tmp_path) -> None:
    learner = _learner()
    data = _stream(2, 80, list(range(CLASSES)))
    for x, y in data[:30]:
        learner.learn(x, y)
    assert_resumes_bit_identically(learner, models.mlp(DIM, [HIDDEN, HIDDEN], CLASSES), data[30:], tmp_path)


def test_latent_replay_retains_classes_no_longer_seen() -> None:
    (sgd_old, _), (latent_old, latent_new) = old_classes_kept(_learner, "sgd"), old_classes_kept(_learner, "latent-replay")
    assert latent_old > sgd_old + 0.3 and latent_new > 0.8, (sgd_old, latent_old, latent_new)


def test_a_frozen_part_without_layers_above_is_refused_with_the_setting() -> None:
    with pytest.raises(ValueError, match="latent_layers=3.*at most 2"):
        _learner(latent_layers=3)
