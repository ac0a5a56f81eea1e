"""The flipped-label stream the context tests share (contexts, packnet, pnn): the same inputs, relabelled per
concept, so only a learner that tells old meaning from new keeps both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from edge_cl import OnlineLearner, models
from tests.oracles import assert_same_state

DIM, CLASSES, BATCH = 6, 3, 10
# Each concept relabels the same inputs: A's rule, B = A's labels shifted by one, C by two, D with 0 and 1 swapped.
RELABEL = {"A": [0, 1, 2], "B": [1, 2, 0], "C": [2, 0, 1], "D": [1, 0, 2]}
ABA = [("A", 250), ("B", 250), ("A", 60)]


def concepts(plan: list[tuple[str, int]], seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Batches of i.i.d. normal inputs labelled by one fixed linear rule, relabelled per concept of ``plan``."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(1000 + seed).standard_normal((DIM, CLASSES))
    for name, steps in plan:
        for _ in range(steps):
            x = rng.standard_normal((BATCH, DIM)).astype(np.float32)
            yield name, x, np.asarray(RELABEL[name])[np.argmax(x @ w, axis=1)].astype(np.int64)


def make(method: str, seed: int = 0, **kw: object) -> OnlineLearner:
    """A small MLP learner of ``method`` with room for 300 buffered samples (lr 0.1, no trigger)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.mlp(DIM, [32], CLASSES)
    options = {"replay_batch": 10, "trigger": None, "lr": 0.1} | kw
    budget = OnlineLearner.required_bytes(model, buffer_samples=300, method=method, **options)
    return OnlineLearner(model, budget_bytes=budget, method=method, seed=seed, device="cpu", **options)


def run(learner: OnlineLearner, plan: list[tuple[str, int]], seed: int = 0) -> list[tuple[str, float]]:
    """Learn the plan test-then-train; each step's (concept, accuracy before the update)."""
    return [(name, learner.learn(x, y).new_correct / BATCH) for name, x, y in concepts(plan, seed)]


def visit(acc: list[tuple[str, float]], start: int, steps: int) -> float:
    """The mean accuracy of ``steps`` steps from ``start``."""
    return float(np.mean([a for _, a in acc[start:start + steps]]))


def assert_resumes_after_two_contexts(method: str, tmp_path: Path) -> None:
    """Save ``method`` after A and B opened two contexts, load it under another torch seed, learn A's return in
    both: the states match bit for bit and the loaded learner is back on context 0."""
    data = list(concepts(ABA))
    a = make(method)
    for _, x, y in data[:300]:
        a.learn(x, y)
    assert a.get_method(method).counts["opened"] == 2
    a.save(tmp_path / "state.pt")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        b = OnlineLearner.load(tmp_path / "state.pt", model=models.mlp(DIM, [32], CLASSES), device="cpu")
    assert b.get_method(method).report() == a.get_method(method).report()
    for _, x, y in data[300:]:
        a.learn(x, y)
        b.learn(x, y)
    assert_same_state(a.state_dict(), b.state_dict())
    assert b.get_method(method).active_serial == 0
