"""ER-ACE, experience replay with asymmetric cross-entropy (Caccia et al. 2022), made task-free.

The new samples' cross-entropy leaves out the classes seen before that are absent from the micro-batch, so
arriving classes do not push the old ones' logits down; replayed samples take the full cross-entropy.
The learner's step takes the plain cross-entropy of the new rows; this method's loss term swaps it for the
masked one (adds ``masked - plain``, whose gradients cancel the plain term's), so the step needs no hook of
its own. Classes seen so far are a ``[num_classes]`` bool tensor, counted in the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, Step
from edge_cl.methods.registry import register
from edge_cl.relu_chain import cross_entropy_grad


class ERACESettings(MethodSettings):
    """ER-ACE's settings."""

    ace_replay_weight: float = Field(1.0, ge=0, description="Weight of the replayed samples' cross-entropy.")


@register
class ERACE(Method):
    """Asymmetric cross-entropy: masked CE on the new rows, full CE on a replay draw (summed, as the paper)."""

    name = "er-ace"
    Settings: ClassVar[type[MethodSettings]] = ERACESettings
    uses_buffer = True

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, ERACESettings):
            raise TypeError(f"{type(self).__name__} needs ERACESettings, got {type(settings).__name__}")
        self.weight = float(settings.ace_replay_weight)
        self.seen = torch.zeros(ctx.num_classes, dtype=torch.bool, device=ctx.device)

    def tensors(self) -> list[Tensor]:
        return [self.seen]

    def replay_draws(self) -> Sequence[Draw]:
        return (Draw("ace", self.ctx.replay_batch),)

    def masked_logits(self, logits: Tensor, y: Tensor) -> Tensor:
        """``logits`` with the classes seen before but absent from ``y`` set to the lowest float."""
        present = torch.zeros_like(self.seen)
        present[y] = True
        hidden = self.seen & ~present
        return logits.masked_fill(hidden.unsqueeze(0), torch.finfo(logits.dtype).min)

    def loss(self, step: Step) -> Tensor | None:
        plain = F.cross_entropy(step.logits, step.y)
        term = F.cross_entropy(self.masked_logits(step.logits, step.y), step.y) - plain
        seg = step.draws.get("ace")
        if seg is not None and len(seg) and self.weight > 0:
            term = term + self.weight * F.cross_entropy(seg.logits, seg.y)
        return term

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        # The masked and the plain cross-entropy meet at the new rows' logits before the learner's own CE does
        # (autograd sums them there first): one pair for both keeps that order of additions.
        present = torch.zeros_like(self.seen)
        present[step.y] = True
        hidden = (self.seen & ~present).unsqueeze(0)
        masked = step.logits.masked_fill(hidden, torch.finfo(step.logits.dtype).min)
        grad_masked = cross_entropy_grad(torch.log_softmax(masked, 1), step.y, 1.0).masked_fill_(hidden, 0.0)
        grad_plain = cross_entropy_grad(torch.log_softmax(step.logits, 1), step.y, -1.0)
        grads = [(0, grad_masked + grad_plain)]
        seg = step.draws.get("ace")
        if seg is not None and len(seg) and self.weight > 0:
            grads.append((seg.start, cross_entropy_grad(torch.log_softmax(seg.logits, 1), seg.y, self.weight)))
        return grads

    def after_update(self, step: Step) -> None:
        self.seen[step.y] = True
