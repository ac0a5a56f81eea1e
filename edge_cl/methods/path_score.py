"""The part SI and RWalk share: a copy of the weights before each step, so that after it the method can
score each parameter's move along the path the optimizer actually took (``accumulate_path_``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from edge_cl.methods.base import MethodContext, MethodSettings, Step
from edge_cl.methods.importance import ImportanceMethod


class PathScoreMethod(ImportanceMethod):
    """An importance method whose running estimate (``current``) accumulates a per-step path score."""

    estimates_in_step = False  # the path score comes from the step's gradient and move, not an estimate

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        self.prev = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]

    def tensors(self) -> list[Tensor]:
        return [*super().tensors(), *self.prev]

    def step_tensors(self) -> list[Tensor]:
        return [*super().step_tensors(), *self.prev]

    def before_update(self, step: Step) -> None:
        super().before_update(step)
        with torch.no_grad():
            torch._foreach_copy_(self.prev, self.params)

    def after_update(self, step: Step) -> None:
        self.accumulate_path_()

    def observe(self, x: Tensor) -> bool:
        return False  # the path score needs the labelled loss's gradient

    def accumulate_path_(self) -> None:
        """Fold the step just taken (``param - prev``, ``param.grad``) into ``current``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "prev": [t.clone() for t in self.prev]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for dst, src in zip(self.prev, state["prev"], strict=True):
            dst.copy_(src)
