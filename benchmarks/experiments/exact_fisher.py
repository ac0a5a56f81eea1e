"""Online EWC with the exact diagonal Fisher, as a bench plugin (``--plugins exact_fisher``): issue #10's test of
whether a better estimator makes er+ewc beat er. Not a shipped method: on validation seeds it did not
(BENCHMARKS.md, ``ewc-variants-validation``).

edge_cl's EWC uses the empirical Fisher, ``E_x[g_y^2]`` with ``g_y`` the gradient of ``-log p(y|x)`` at the
sample's own label. The exact Fisher takes the expectation over the model's predictive instead,
``E_x[sum_c p(c|x) g_c^2]``, which van de Ven (2025, "On the computation of the Fisher Information in continual
learning") found the best of the usual estimates. Here each sample is expanded to one row per class ``c``,
weighted by ``sqrt(p(c|x))`` (detached), so the squared per-row gradients the shared estimator sums are exactly
``p(c|x) g_c^2``; the per-row weight keeps the estimator's outer-product shortcut for Linear layers.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from edge_cl.methods import register
from edge_cl.methods.base import MethodSettings
from edge_cl.methods.ewc import EWCSettings, OnlineEWC


@register
class ExactFisherEWC(OnlineEWC):
    """Online EWC whose importance is the exact (expected over p(c|x)) diagonal Fisher."""

    name = "ewc-exact"
    Settings: ClassVar[type[MethodSettings]] = EWCSettings
    estimates_in_step = False  # the estimate needs its own forward on the expanded rows
    fixed_shape = False
    _row_weight: Tensor | None = None

    def estimate(self, x: Tensor, y: Tensor | None) -> list[Tensor]:
        n = x.shape[0]
        with torch.no_grad():
            p = torch.softmax(self.model(x), dim=1)
        classes = p.shape[1]
        rows = x.repeat_interleave(classes, 0)
        labels = torch.arange(classes, device=x.device).repeat(n)
        self._row_weight = p.reshape(-1).sqrt()
        try:
            totals = self._estimate_linear(rows, labels) if self._linear_only() else self._estimate_vmap(rows, labels)
        finally:
            self._row_weight = None
        return [t.div_(n) for t in totals]

    def sample_loss(self, logits: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("EWC needs labels")
        if self._row_weight is None:
            return super().sample_loss(logits, y)
        return (F.cross_entropy(logits, y, reduction="none") * self._row_weight).sum()
