"""Online MAS (Aljundi et al. 2018; task-free, 2019): output sensitivity, no labels needed."""

from __future__ import annotations

from torch import Tensor

from edge_cl.importance.base import Importance


class OnlineMAS(Importance):
    """Importance = ``E[|d ||f(x)||^2 / d theta|]``, so unlabeled stream samples count too."""

    name = "mas"
    needs_labels = False

    def sample_loss(self, logits: Tensor, y: Tensor | None) -> Tensor:
        return logits.pow(2).sum()

    def phi(self, grads: Tensor) -> Tensor:
        return grads.abs()
