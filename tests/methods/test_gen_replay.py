"""Generative replay (edge_cl.methods.gen_replay): what its generator learns, what it keeps, what it retains.

The contract suite (tests/methods/test_contract.py) covers save / load / resume, the budget, seeding and skips."""

from __future__ import annotations

import numpy as np
import torch

from edge_cl import OnlineLearner, models

DIM, CLASSES = 16, 4


def _blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class a mean and one long axis (std 3 along it, 0.3 across)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((CLASSES, DIM)).astype(np.float32) * 3
    axes = rng.standard_normal((CLASSES, DIM)).astype(np.float32)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return means, axes


def _draw(rng: np.random.Generator, means: np.ndarray, axes: np.ndarray, classes: list[int], n: int
          ) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(classes, n)
    x = means[y] + 3 * rng.standard_normal((n, 1)).astype(np.float32) * axes[y]
    x += 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x.astype(np.float32), y


def _learner(method: str, **kw: object) -> OnlineLearner:
    torch.manual_seed(0)
    return OnlineLearner(models.mlp(DIM, [32], CLASSES), 400_000, method=method, device="cpu", seed=0,
                         standardize=False, lr=0.05, **kw)


def test_the_generator_learns_each_class_mean_and_its_long_axis():
    means, axes = _blobs(0)
    learner = _learner("gen-replay", gen_rank=4)
    rng = np.random.default_rng(1)
    for _ in range(300):
        learner.learn(*_draw(rng, means, axes, list(range(CLASSES)), 10))
    gen = learner.methods[0]
    assert torch.allclose(gen.means, torch.from_numpy(means), atol=0.5)
    x, y = gen.sample(4000)
    for c in range(CLASSES):
        rows = x[y == c].numpy()
        assert np.abs(rows.mean(0) - means[c]).max() < 0.6
        # The generated spread follows the class's long axis: its top principal direction is that axis.
        top = np.linalg.svd(rows - rows.mean(0), full_matrices=False)[2][0]
        assert abs(float(top @ axes[c])) > 0.9
        assert 1.5 < float(((rows - rows.mean(0)) @ axes[c]).std()) < 3.5


def test_it_keeps_no_samples_and_counts_its_bytes():
    learner = _learner("gen-replay", gen_rank=3)
    report = learner.memory_report()
    assert report["buffer_capacity"] == 0
    # mean and a 2 x rank-row sketch per class (float32), counts and rows filled (int64), the range seen (2 x dim)
    expected = CLASSES * DIM * (2 * 3 + 1) * 4 + 2 * CLASSES * 8 + 2 * DIM * 4
    assert report["parts"]["gen-replay"] == expected


def test_generated_replay_retains_classes_no_longer_seen():
    """Classes 0-1, then 2-3 only, each next to one of the first two: generated replay keeps 0-1 where
    fine-tuning hands their region to 2-3."""
    means, axes = _blobs(2)
    shift = np.random.default_rng(7).standard_normal(DIM).astype(np.float32)
    means[2:] = means[:2] + 2.5 * shift / np.linalg.norm(shift)

    def retained(method: str) -> float:
        learner = _learner(method)
        rng = np.random.default_rng(3)
        for classes in ([0, 1], [2, 3]):
            for _ in range(150):
                learner.learn(*_draw(rng, means, axes, classes, 10))
        old = _draw(np.random.default_rng(4), means, axes, [0, 1], 400)
        new = _draw(np.random.default_rng(5), means, axes, [2, 3], 400)
        return float((learner.predict(old[0]) == old[1]).mean()), float((learner.predict(new[0]) == new[1]).mean())

    (sgd_old, _), (gen_old, gen_new) = retained("sgd"), retained("gen-replay")
    assert sgd_old < 0.3 and gen_old > 0.85 and gen_new > 0.85, (sgd_old, gen_old, gen_new)


def test_rank_zero_replays_class_means():
    means, axes = _blobs(5)
    learner = _learner("gen-replay", gen_rank=0)
    rng = np.random.default_rng(6)
    for _ in range(50):
        learner.learn(*_draw(rng, means, axes, [0, 2], 10))
    x, y = learner.methods[0].sample(100)
    assert set(y.tolist()) == {0, 2}
    for c in (0, 2):
        assert torch.allclose(x[y == c], learner.methods[0].means[c].expand_as(x[y == c]))
