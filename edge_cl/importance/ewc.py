"""Online EWC (Schwarz et al. 2018): a running diagonal Fisher and one anchor."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from edge_cl.importance.base import Importance


class OnlineEWC(Importance):
    """Importance = empirical diagonal Fisher ``E[(d log p(y|x) / d theta)^2]``; ``F <- gamma F + F_new``."""

    name = "ewc"
    needs_labels = True

    def sample_loss(self, logits: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("EWC needs labels")
        return F.cross_entropy(logits, y, reduction="sum")

    def phi(self, grads: Tensor) -> Tensor:
        return grads.pow(2)
