"""Small learners and their channels for the fleet tests."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Self

import numpy as np
import torch

from edge_cl import OnlineLearner, models
from edge_cl.fleet import FleetChannel

DIM, CLASSES = 8, 3


def learner(seed: int, **options: object) -> OnlineLearner:
    torch.manual_seed(seed)
    return OnlineLearner(models.mlp(DIM, [16], CLASSES), budget_bytes=200_000, lr=0.05, seed=seed, **options)


def batches(seed: int, n: int, batch: int = 8, shift: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` labelled micro-batches; ``shift`` moves the class prototypes, so two devices see different data."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(shift, 1.0, (CLASSES, DIM)).astype(np.float32)
    out = []
    for _ in range(n):
        y = rng.integers(0, CLASSES, batch)
        out.append(((protos[y] + rng.normal(0, 0.3, (batch, DIM))).astype(np.float32), y))
    return out


def token_file(tmp: Path, name: str = "fleet.token") -> Path:
    path = tmp / name
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return path


class LearningLoop:
    """A daemon's learning thread in miniature: learns its batches, serving the channel between two steps, then
    keeps serving it until stopped."""

    def __init__(self, learner: OnlineLearner, channel: FleetChannel,
                 data: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.learner, self.channel, self.data = learner, channel, list(data)
        self.stop = threading.Event()
        self.learned_all = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self.channel.apply_pending(self.learner)
                if self.data:
                    self.learner.learn(*self.data.pop(0))
                else:
                    self.learned_all.set()
                    self.stop.wait(0.01)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        if self.error is not None:
            raise self.error
