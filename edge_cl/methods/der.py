"""Dark Experience Replay: DER and DER++ (Buzzega et al. 2020).

Each buffered sample keeps the logits the model gave it in the step it arrived (before that step's update);
replay matches the model's current logits to them (MSE), a functional regulariser. DER++ adds cross-entropy
on replayed labels. Combine with importance methods by '+': ``"der++ + ewc"`` (the registry reads the
longest registered name first, so ``"der+++ewc"`` means the same).

DER++'s defaults (``der_alpha=0.5``, ``der_beta=1.0``, one shared draw) were chosen on a validation stream (rotated
MNIST, seed 100, a fifth of each task): the shared draw matched the paper's two draws there with ER's replayed rows
per step; ``der_shared_draw=False`` gives the paper's two draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, SampleField, Step
from edge_cl.methods.registry import register
from edge_cl.relu_chain import cross_entropy_grad, mse_grad

_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class DERSettings(MethodSettings):
    """DER's settings."""

    der_alpha: float = Field(1.0, ge=0, description="Weight of the logit-matching MSE on replayed samples.")
    logits_dtype: Literal["float16", "float32"] = Field(
        "float16", description="Storage of the per-sample logits (float16 halves their bytes).")


class DERPPSettings(DERSettings):
    """DER++'s settings."""

    der_alpha: float = Field(0.5, ge=0, description="Weight of the logit-matching MSE on replayed samples.")
    der_beta: float = Field(1.0, ge=0, description="Weight of the cross-entropy on replayed labels.")
    der_shared_draw: bool = Field(
        True, description="Take the MSE and the CE on one replay draw (ER's replayed rows per step) instead of the "
                          "paper's two (one more forward and backward of replay_batch rows).")


@register
class DER(Method):
    """DER: MSE between the model's logits on a replay draw and the logits stored with those samples."""

    name = "der"
    Settings: ClassVar[type[MethodSettings]] = DERSettings
    uses_buffer = True
    fixed_shape = True

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, DERSettings):
            raise TypeError(f"{type(self).__name__} needs DERSettings, got {type(settings).__name__}")
        self.alpha = float(settings.der_alpha)
        self.dtype = _DTYPES[settings.logits_dtype]

    def sample_fields(self) -> dict[str, SampleField]:
        return {"logits": SampleField((self.ctx.num_classes,), self.dtype)}

    def replay_draws(self) -> Sequence[Draw]:
        return (Draw("der", self.ctx.replay_batch),)

    def sample_values(self, step: Step) -> dict[str, Tensor]:
        # The logits of the step's forward, before the update (as the paper); the buffer stores the rows it keeps
        # in the field's dtype, saturating beyond float16's 65504.
        return {"logits": step.logits}

    def _mse(self, step: Step, key: str) -> Tensor | None:
        seg = step.draws.get(key)
        if seg is None or len(seg) == 0 or self.alpha == 0:
            return None
        return self.alpha * F.mse_loss(seg.logits, seg.fields["logits"].to(seg.logits.dtype))

    def loss(self, step: Step) -> Tensor | None:
        return self._mse(step, "der")

    def _mse_grad(self, step: Step, key: str) -> list[tuple[int, Tensor]]:
        seg = step.draws.get(key)
        if seg is None or len(seg) == 0 or self.alpha == 0:
            return []
        return [(seg.start, mse_grad(seg.logits, seg.fields["logits"].to(seg.logits.dtype), self.alpha))]

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        return self._mse_grad(step, "der")


@register
class DERPP(DER):
    """DER++: DER's logit MSE plus cross-entropy on the labels of a second replay draw (or the same one)."""

    name = "der++"
    Settings: ClassVar[type[MethodSettings]] = DERPPSettings

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, DERPPSettings):
            raise TypeError(f"{type(self).__name__} needs DERPPSettings, got {type(settings).__name__}")
        self.beta = float(settings.der_beta)
        self.shared = bool(settings.der_shared_draw)

    def replay_draws(self) -> Sequence[Draw]:
        if self.shared:
            return (Draw("der", self.ctx.replay_batch),)
        return (Draw("der", self.ctx.replay_batch), Draw("der_ce", self.ctx.replay_batch))

    def loss(self, step: Step) -> Tensor | None:
        terms = []
        mse = self._mse(step, "der")
        if mse is not None:
            terms.append(mse)
        seg = step.draws.get("der" if self.shared else "der_ce")
        if seg is not None and len(seg) and self.beta > 0:
            ce = F.cross_entropy(seg.logits, seg.y)
            terms.append(ce if self.beta == 1.0 else self.beta * ce)  # x * 1.0 is x: one op fewer, same bits
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        grads = self._mse_grad(step, "der")
        seg = step.draws.get("der" if self.shared else "der_ce")
        if seg is not None and len(seg) and self.beta > 0:
            grads.append((seg.start, cross_entropy_grad(torch.log_softmax(seg.logits, 1), seg.y, self.beta)))
        return grads
