"""Online MAS (Aljundi et al. 2018; task-free, 2019): output sensitivity, no labels needed."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from edge_cl.methods.base import MethodSettings
from edge_cl.methods.importance import ImportanceMethod, ImportanceSettings
from edge_cl.methods.registry import register


class MASSettings(ImportanceSettings):
    """Online MAS's settings."""

    importance_lambda: float = Field(3e-4, ge=0, description="Penalty strength lambda; omega has mean 1 (chosen on validation streams, see README).")
    importance_scope: Literal["model", "tensor"] = Field(
        "tensor", description="What the consolidated omega has mean 1 over (per tensor for MAS: chosen on "
                              "validation streams, see BENCHMARKS.md importance-scope-validation).")


@register
class OnlineMAS(ImportanceMethod):
    """Importance = ``E[|d ||f(x)||^2 / d theta|]``, so unlabeled stream samples count too."""

    name = "mas"
    Settings: ClassVar[type[MethodSettings]] = MASSettings
    needs_labels = False
    fixed_shape = True  # the pull is device work; the estimate runs after the step on the fixed path

    def sample_loss(self, logits: Tensor, y: Tensor | None) -> Tensor:
        return logits.pow(2).sum()

    def sample_loss_grad(self, logits: Tensor, y: Tensor | None) -> Tensor:
        return logits * 2.0

    def phi(self, grads: Tensor) -> Tensor:
        return grads.abs()

    def phi_all(self, tensors: list[Tensor]) -> list[Tensor]:
        return list(torch._foreach_abs(tensors))
