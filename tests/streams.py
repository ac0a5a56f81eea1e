"""Synthetic data for tests: Gaussian class prototypes, a task is a fixed feature permutation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def permuted_prototypes(seed: int, dim: int = 32, classes: int = 10,
                        noise: float = 2.0) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
    """Returns ``draw(n, task) -> (x float32 [n, dim], y int64 [n])``; task 1 permutes task 0's features."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((classes, dim)).astype(np.float32)
    perm = rng.permutation(dim)

    def draw(n: int, task: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        x = protos[y] + noise * rng.standard_normal((n, dim)).astype(np.float32)
        return (x[:, perm] if task == 1 else x).astype(np.float32), y.astype(np.int64)

    return draw
