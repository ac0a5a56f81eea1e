"""LwF-style distillation (Li & Hoiem 2017), task-free: the teacher is the model at the last consolidation.

The learner's trigger (not a task id) decides when the teacher is refreshed. Until the first consolidation
there is no teacher and the method is plain experience replay. The distillation (temperature-softened KL)
runs on the incoming samples and on a replay draw that also joins the cross-entropy. The teacher's weights
are a copy of the model's, counted in the budget under this method's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torch.func import functional_call

from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, Step
from edge_cl.methods.eval_mode import evaluating
from edge_cl.methods.registry import register


class LwFSettings(MethodSettings):
    """LwF's settings."""

    lwf_alpha: float = Field(1.0, ge=0, description="Weight of the distillation term.")
    lwf_temperature: float = Field(2.0, gt=0, description="Softmax temperature of the distillation.")


def distill(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, mean over rows."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), log_target=True,
                    reduction="batchmean") * (t * t)


def distill_grad(student: Tensor, teacher: Tensor, temperature: float, scale: float) -> Tensor:
    """Gradient at ``student`` of ``scale * distill(student, teacher, temperature)``, in the order autograd
    computes it (the constants, ``kl_div``'s ``-exp(target)``, ``_log_softmax_backward_data``, then ``/ T``)."""
    t = temperature
    log_student = F.log_softmax(student / t, dim=1)
    log_teacher = F.log_softmax(teacher / t, dim=1)
    outer = torch.full((), scale, dtype=student.dtype, device=student.device) * (t * t) / student.shape[0]
    grad = torch.ops.aten._log_softmax_backward_data((-torch.exp(log_teacher)) * outer, log_student, 1, student.dtype)
    return grad / t


@register
class LwF(Method):
    """Replay plus distillation from the model as it was at the last consolidation."""

    name = "lwf"
    Settings: ClassVar[type[MethodSettings]] = LwFSettings
    uses_buffer = True

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, LwFSettings):
            raise TypeError(f"{type(self).__name__} needs LwFSettings, got {type(settings).__name__}")
        self.alpha = float(settings.lwf_alpha)
        self.temperature = float(settings.lwf_temperature)
        self.state_names = list(ctx.model.state_dict().keys())
        self.teacher = [t.detach().clone() for t in ctx.model.state_dict().values()]
        self.ready = torch.zeros((), dtype=torch.bool, device=ctx.device)  # a teacher has been taken

    def tensors(self) -> list[Tensor]:
        return [*self.teacher, self.ready]

    def replay_draws(self) -> Sequence[Draw]:
        return (Draw("lwf", self.ctx.replay_batch, join_ce=True),)

    def _pair(self, step: Step) -> tuple[Tensor, Tensor, int | None] | None:
        """The student's logits (new rows, then the draw's), the teacher's on the same rows, and where the draw
        starts in the step's batch (None without one); None while there is no teacher."""
        if self.alpha == 0 or not bool(self.ready):
            return None
        seg = step.draws.get("lwf")
        xs, student, start = step.x, step.logits, None
        if seg is not None and len(seg):
            xs, student, start = torch.cat([step.x, seg.x]), torch.cat([step.logits, seg.logits]), seg.start
        # The teacher is the model as it predicted at the consolidation: eval mode. In train mode BatchNorm would
        # normalise with each batch's statistics and write them into the teacher's saved running statistics (NaN
        # ones on a non-finite batch), and Dropout would make its targets random.
        with torch.no_grad(), evaluating(self.ctx.model):
            teacher = functional_call(self.ctx.model, dict(zip(self.state_names, self.teacher, strict=True)), (xs,))
        return student, teacher, start

    def loss(self, step: Step) -> Tensor | None:
        pair = self._pair(step)
        return None if pair is None else self.alpha * distill(pair[0], pair[1], self.temperature)

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        pair = self._pair(step)
        if pair is None:
            return []
        student, teacher, start = pair
        grad = distill_grad(student, teacher, self.temperature, self.alpha)
        if start is None:
            return [(0, grad)]
        return [(0, grad[:step.batch]), (start, grad[step.batch:])]

    def consolidate(self) -> None:
        with torch.no_grad():
            for dst, src in zip(self.teacher, self.ctx.model.state_dict().values(), strict=True):
                dst.copy_(src)
            self.ready.fill_(True)
