"""CLS-ER (Arani et al. 2022): a plastic and a stable exponential-moving-average copy of the model as
short- and long-term semantic memories, with a consistency loss on replay.

Every step replays a draw that joins the cross-entropy (experience replay) and pulls the model's logits on
it towards the better memory's (per sample, the copy giving the true label more probability). After the
update each copy moves towards the model with its own probability and decay. Predictions come from the
stable copy (``clser_predict``). Both copies are counted in the budget under this method's name.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, Segment, Step
from edge_cl.methods.registry import register
from edge_cl.relu_chain import mse_grad


class CLSERSettings(MethodSettings):
    """CLS-ER's settings."""

    clser_reg: float = Field(0.15, ge=0, description="Weight of the consistency MSE on replayed samples.")
    clser_plastic_rate: float = Field(0.9, gt=0, le=1, description="Probability a step updates the plastic copy.")
    clser_plastic_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay of the plastic copy.")
    clser_stable_rate: float = Field(0.7, gt=0, le=1, description="Probability a step updates the stable copy.")
    clser_stable_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay of the stable copy.")
    clser_predict: Literal["stable", "plastic", "model"] = Field(
        "stable", description="Which network predicts (and is exported).")


def _frozen_copy(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    for p in twin.parameters():
        p.requires_grad_(False)
    # The copies are never trained: their targets come from eval mode. In train mode BatchNorm would normalise each
    # replay draw by its own statistics and write them into the copy (a skipped step would then have changed it),
    # and Dropout would make the targets random. Their running statistics are the model's (copied in _ema).
    return twin.eval()


@register
class CLSER(Method):
    """Replay + consistency with the better of two EMA memories; the stable memory predicts."""

    name = "cls-er"
    Settings: ClassVar[type[MethodSettings]] = CLSERSettings
    uses_buffer = True

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, CLSERSettings):
            raise TypeError(f"{type(self).__name__} needs CLSERSettings, got {type(settings).__name__}")
        self.s = settings
        self.plastic = _frozen_copy(ctx.model)
        self.stable = _frozen_copy(ctx.model)
        self.updates = torch.zeros(2, dtype=torch.int64, device=ctx.device)  # EMA updates of (plastic, stable)

    def tensors(self) -> list[Tensor]:
        return [*self.plastic.state_dict().values(), *self.stable.state_dict().values(), self.updates]

    def replay_draws(self) -> Sequence[Draw]:
        return (Draw("clser", self.ctx.replay_batch, join_ce=True),)

    def _target(self, seg: Segment) -> Tensor:
        """Per replayed row, the logits of whichever EMA model gives its label more probability."""
        with torch.no_grad():
            plastic, stable = self.plastic(seg.x), self.stable(seg.x)
            rows = torch.arange(len(seg), device=seg.y.device)
            use_stable = stable.softmax(1)[rows, seg.y] > plastic.softmax(1)[rows, seg.y]
            return torch.where(use_stable.unsqueeze(1), stable, plastic)

    def loss(self, step: Step) -> Tensor | None:
        seg = step.draws.get("clser")
        if seg is None or len(seg) == 0 or self.s.clser_reg == 0:
            return None
        return self.s.clser_reg * F.mse_loss(seg.logits, self._target(seg))

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        seg = step.draws.get("clser")
        if seg is None or len(seg) == 0 or self.s.clser_reg == 0:
            return []
        return [(seg.start, mse_grad(seg.logits, self._target(seg), self.s.clser_reg))]

    def after_update(self, step: Step) -> None:
        u = torch.rand(2, generator=self.ctx.generator, device=self.ctx.device).tolist()
        for i, (twin, rate, decay) in enumerate(((self.plastic, self.s.clser_plastic_rate, self.s.clser_plastic_decay),
                                                 (self.stable, self.s.clser_stable_rate, self.s.clser_stable_decay))):
            if u[i] < rate:
                self._ema(twin, decay, step.index + 1)
                self.updates[i] += 1

    def _ema(self, twin: nn.Module, decay: float, global_step: int) -> None:
        # Early on the copies follow the model closely (true average), as the paper's warm start.
        a = min(1.0 - 1.0 / (global_step + 1), decay)
        with torch.no_grad():
            ema: list[Tensor] = list(twin.parameters())
            cur: list[Tensor] = [p.detach() for p in self.ctx.model.parameters()]
            torch._foreach_mul_(ema, a)
            torch._foreach_add_(ema, cur, alpha=1.0 - a)
            for b_ema, b in zip(twin.buffers(), self.ctx.model.buffers(), strict=True):
                b_ema.copy_(b)

    def predictor(self) -> nn.Module | None:
        return {"stable": self.stable, "plastic": self.plastic, "model": None}[self.s.clser_predict]
