"""A river classifier backed by an :class:`~edge_cl.OnlineLearner`, so river pipelines and
``river.evaluate.progressive_val_score`` can use edge_cl."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from edge_cl.extras import require

base = require("river.base", "river", "edge_cl.river (the river adapter)")

from edge_cl import models
from edge_cl.learner import OnlineLearner


class Classifier(base.Classifier):
    """river ``learn_one`` / ``predict_proba_one`` over an MLP learned online by edge_cl.

    Samples are gathered into micro-batches of ``batch_size`` before each ``learn`` step. Feature
    names are fixed by the first sample (missing ones read as 0); labels are mapped to class ids in
    order of appearance, at most ``num_classes`` of them. Scale features first (e.g. with
    ``preprocessing.StandardScaler() | Classifier()``): the network expects inputs of order 1.
    ``method`` names the learner's method(s) (see ``edge_cl.methods.available()``); without it the learner's
    default runs (DER++), as everywhere. ``importance="mas"`` is the older spelling of ``method="er+mas"``.
    """

    def __init__(self, hidden: Sequence[int] = (32,), num_classes: int = 2, budget_bytes: int = 1_000_000,
                 importance: str | None = None, replay_batch: int = 10, lr: float = 0.05, batch_size: int = 8,
                 seed: int = 0, device: str = "cpu", learner_options: dict[str, Any] | None = None,
                 method: str | None = None) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.hidden = hidden
        self.num_classes = num_classes
        self.budget_bytes = budget_bytes
        self.importance = importance
        self.replay_batch = replay_batch
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.learner_options = learner_options
        self.method = method
        self.learner: OnlineLearner | None = None
        self.features: list[Hashable] = []
        self.classes: list[Hashable] = []
        self._pending_x: list[np.ndarray] = []
        self._pending_y: list[int] = []

    @property
    def _multiclass(self) -> bool:
        return True

    def _vector(self, x: dict[Hashable, Any]) -> np.ndarray:
        return np.array([float(x.get(f, 0.0)) for f in self.features], dtype=np.float32)

    def _ensure_learner(self, x: dict[Hashable, Any]) -> OnlineLearner:
        if self.learner is None:
            self.features = sorted(x, key=str)
            # Initial weights come from ``seed`` too, in a forked RNG: the global torch RNG is neither read nor seeded.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = models.mlp(len(self.features), list(self.hidden), self.num_classes)
            # ``method`` (any registered method, e.g. "er+ewc") wins over the older ``importance`` spelling; with
            # neither, the learner's default runs.
            which: dict[str, Any] = ({"method": self.method} if self.method
                                     else {"importance": self.importance} if self.importance else {})
            self.learner = OnlineLearner(model, self.budget_bytes, replay_batch=self.replay_batch, lr=self.lr,
                                         device=self.device, seed=self.seed, **which, **(self.learner_options or {}))
        return self.learner

    def _class_id(self, y: Hashable) -> int:
        try:
            return self.classes.index(y)
        except ValueError:
            if len(self.classes) >= self.num_classes:
                raise ValueError(f"label {y!r} is label number {len(self.classes) + 1}, but num_classes="
                                 f"{self.num_classes}; raise num_classes") from None
            self.classes.append(y)
            return len(self.classes) - 1

    def learn_one(self, x: dict[Hashable, Any], y: Hashable) -> None:
        learner = self._ensure_learner(x)
        self._pending_x.append(self._vector(x))
        self._pending_y.append(self._class_id(y))
        if len(self._pending_x) >= self.batch_size:
            learner.learn(np.stack(self._pending_x), np.array(self._pending_y, dtype=np.int64))
            self._pending_x.clear()
            self._pending_y.clear()

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any) -> dict[Any, float]:
        if self.learner is None or not self.classes:
            return {}
        proba = self.learner.predict_proba(self._vector(x)[None])[0]
        return {label: float(proba[i]) for i, label in enumerate(self.classes)}
