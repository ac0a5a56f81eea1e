"""A-GEM (Chaudhry et al. 2019): project the update when it would raise the loss on replayed samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, Step
from edge_cl.methods.registry import register
from edge_cl.relu_chain import cross_entropy_grad


def project(grads: list[Tensor], ref: list[Tensor], eps: float = 1e-12) -> None:
    """In place: ``g <- g - min(g . r, 0) / (r . r) r`` over the concatenation of all tensors, so that
    ``g . r >= 0`` afterwards and ``g`` is unchanged when it already agrees with ``r``. No host sync."""
    dot = torch.stack([torch.vdot(g.flatten(), r.flatten()) for g, r in zip(grads, ref, strict=True)]).sum()
    norm = torch.stack([torch.vdot(r.flatten(), r.flatten()) for r in ref]).sum()
    coef = dot.clamp(max=0) / (norm + eps)
    torch._foreach_sub_(grads, torch._foreach_mul(ref, coef))


@register
class AGEM(Method):
    """A replay draw (not in the cross-entropy) gives the reference gradient ``g_ref`` from the same forward
    (one extra backward); before the optimizer step the gradient is projected with :func:`project`."""

    name = "a-gem"
    uses_buffer = True

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        self.params = list(ctx.params)
        self.ref = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]
        self._have_ref = False
        self._pending: tuple[Tensor | None, ...] = ()  # this step's reference gradient until the step is taken
        self.projections = 0  # steps with a reference gradient (the projection itself is branch-free)

    def tensors(self) -> list[Tensor]:
        return list(self.ref)

    def replay_draws(self) -> Sequence[Draw]:
        return (Draw("agem", self.ctx.replay_batch),)

    def loss(self, step: Step) -> Tensor | None:
        seg = step.draws.get("agem")
        self._have_ref = seg is not None and len(seg) > 0
        if self._have_ref and seg is not None:
            ref_loss = F.cross_entropy(seg.logits, seg.y)
            # Kept aside: a step skipped on a non-finite loss must leave the state untouched.
            self._pending = torch.autograd.grad(ref_loss, self.params, retain_graph=True, allow_unused=True)
        return None

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        seg = step.draws.get("agem")
        self._have_ref = seg is not None and len(seg) > 0 and step.param_grads is not None
        if self._have_ref and seg is not None and step.param_grads is not None:
            # The reference gradient through the learner's chain: what loss() takes from autograd.
            ref = cross_entropy_grad(torch.log_softmax(seg.logits, 1), seg.y, 1.0)
            self._pending = tuple(step.param_grads([(seg.start, ref)]))
        return []

    def before_update(self, step: Step) -> None:
        if not self._have_ref:
            return
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            return
        with torch.no_grad():
            for r, g in zip(self.ref, self._pending, strict=True):
                r.zero_() if g is None else r.copy_(g)
            self._pending = ()
            project(grads, self.ref)  # type: ignore[arg-type]
        self.projections += 1

    def report(self) -> dict[str, Any]:
        return {"reference_steps": self.projections}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "projections": self.projections}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.projections = int(state.get("projections", 0))
