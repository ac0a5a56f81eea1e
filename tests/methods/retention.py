"""Two-task retention for the method tests: learn task 0, then task 1, measure task 0 (and task 1) after."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edge_cl import models
from edge_cl.learner import OnlineLearner
from tests.streams import permuted_prototypes


def class_split(seed: int, dim: int = 32, classes: int = 10, noise: float = 1.5):
    """``draw(n, task)``: task 0 holds the first half of the classes, task 1 the second (class-incremental)."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((classes, dim)).astype(np.float32)
    half = classes // 2

    def draw(n: int, task: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, half, n) + (half if task == 1 else 0)
        x = protos[y] + noise * rng.standard_normal((n, dim)).astype(np.float32)
        return x.astype(np.float32), y.astype(np.int64)

    return draw


def two_tasks(method: str, *, class_il: bool = False, steps: int = 150, batch: int = 10, seed: int = 0,
              budget_samples: int = 200, **options: Any) -> tuple[float, float, OnlineLearner]:
    """Accuracy on task 0 and task 1 after learning task 0 then task 1 (``steps`` micro-batches each)."""
    draw = class_split(seed) if class_il else permuted_prototypes(seed)
    torch.manual_seed(seed)
    model = models.mlp(32, [64], 10)
    opts: dict[str, Any] = {"method": method, "replay_batch": batch, "lr": 0.1, "seed": seed, "trigger": None}
    opts.update(options)
    probe = torch.manual_seed(seed) and models.mlp(32, [64], 10)
    # Raw inputs, float32 buffer: these retention checks predate the input defaults and are about the methods.
    opts = {"standardize": False, "storage": "float32", **opts}
    budget = OnlineLearner.required_bytes(probe, buffer_samples=budget_samples, **opts)
    learner = OnlineLearner(model, budget_bytes=budget, device="cpu", **opts)
    for task in (0, 1):
        for _ in range(steps):
            learner.learn(*draw(batch, task))
    accs = []
    for task in (0, 1):
        x, y = draw(1000, task)
        accs.append(float((learner.predict(x) == y).mean()))
    return accs[0], accs[1], learner
