"""Online EWC (Schwarz et al. 2018): a running diagonal Fisher and one anchor."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from edge_cl.methods.base import MethodSettings
from edge_cl.methods.importance import ImportanceMethod, ImportanceSettings
from edge_cl.methods.registry import register


class EWCSettings(ImportanceSettings):
    """Online EWC's settings."""

    importance_lambda: float = Field(1e-4, ge=0, description="Penalty strength lambda; omega has mean 1 (chosen on validation streams, see README).")


@register
class OnlineEWC(ImportanceMethod):
    """Importance = empirical diagonal Fisher ``E[(d log p(y|x) / d theta)^2]``; ``F <- gamma F + F_new``."""

    name = "ewc"
    Settings: ClassVar[type[MethodSettings]] = EWCSettings
    needs_labels = True
    fixed_shape = True  # the pull is device work; the estimate runs after the step on the fixed path

    def sample_loss(self, logits: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("EWC needs labels")
        return F.cross_entropy(logits, y, reduction="sum")

    def sample_loss_grad(self, logits: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("EWC needs labels")
        # softmax - onehot(y), the one-hot subtracted in place at the label (one op, not three)
        return torch.softmax(logits, dim=1).scatter_(1, y.unsqueeze(1), -1.0, reduce="add")

    def phi(self, grads: Tensor) -> Tensor:
        return grads.pow(2)

    def phi_all(self, tensors: list[Tensor]) -> list[Tensor]:
        return list(torch._foreach_mul(tensors, tensors))
