"""An online input standardiser: running mean and variance per feature, so raw sensor units can be learned.

:class:`RunningStandardizer` keeps Welford / Chan statistics in float64 (count, mean, sum of squared
deviations) as module buffers; :class:`Standardized` puts it in front of a model, so the learner's forward,
every method's estimate, ``predict``, the saved state and the ONNX export all see the same transform. Only the
learner updates the statistics (on the finite new samples of each step), never a forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class RunningStandardizer(nn.Module):
    """``(x - mean) / std`` per feature with the population statistics of every row seen so far.

    A feature with zero variance (or no rows yet) is only centred (its std counts as 1), so a constant
    sensor maps to 0 and the first row does not blow up. Outputs are clipped to ``[-clip, clip]``: a sensor that
    was constant for n rows and then moves lands at about ``sqrt(n)`` standard deviations (132 on Elec2, whose
    three Victoria features are constant for the first 17,424 rows), which made SGD diverge, and a skipped step
    puts the statistics back, so the learner never got past it (found on the elec2-importance bench, #10).
    """

    count: Tensor
    mean: Tensor
    m2: Tensor

    def __init__(self, dim: int, clip: float = 5.0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"standardizer needs dim >= 1 features, got {dim}")
        if not clip > 0:
            raise ValueError(f"standardizer clip={clip} must be positive")
        self.clip = float(clip)
        self.passthrough = False  # set by the learner once it decided not to standardise (statistics stay empty)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    @property
    def var(self) -> Tensor:
        """Population variance per feature (numpy's ``var``, ddof 0); 0 before any row."""
        return self.m2 / self.count.clamp_min(1.0)

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold the rows of ``x`` [B, D] into the statistics (Chan et al.'s parallel merge)."""
        if x.shape[0] == 0:
            return
        xb = x.detach().to(self.mean.dtype)
        mean_b = xb.mean(0)
        self._merge_(float(xb.shape[0]), mean_b, (xb - mean_b).pow(2).sum(0))

    @torch.no_grad()
    def update_rows(self, x: Tensor, rows: Tensor) -> None:
        """:meth:`update` with the rows of ``x`` where the boolean ``rows`` [B] is True, decided on the device (no
        host synchronisation, fixed shapes: the fixed-shape and CUDA-graph step); other rows may be anything."""
        keep = rows.unsqueeze(1)
        xb = torch.where(keep, x.detach().to(self.mean.dtype), 0.0)
        n_b = rows.to(self.mean.dtype).sum()
        mean_b = xb.sum(0) / n_b.clamp_min(1.0)
        dev = torch.where(keep, xb - mean_b, 0.0)
        self._merge_(n_b, mean_b, (dev * dev).sum(0))

    def _merge_(self, n_b: Tensor | float, mean_b: Tensor, m2_b: Tensor) -> None:
        """Chan et al.'s parallel merge of a batch's row count, mean and summed squared deviations into the
        statistics; a batch of no rows (``update_rows``) leaves them as they are."""
        n_a = self.count.clone()
        total = n_a + n_b
        within = total.clamp_min(1.0)  # only 0 when no row was ever seen: then n_b is 0 and so is every share
        delta = mean_b - self.mean
        self.mean.add_(delta * (n_b / within))
        self.m2.add_(m2_b + delta.pow(2) * (n_a * n_b / within))
        self.count.copy_(total)

    def forward(self, x: Tensor) -> Tensor:
        if self.passthrough:
            # No statistics (the learner's automatic rule decided off): mean 0 and std 1 make the full formula the
            # clip alone, bit for bit, at one operation instead of five.
            return x.clamp(-self.clip, self.clip)
        var = self.var
        std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
        return ((x - self.mean.to(x.dtype)) / std.to(x.dtype)).clamp(-self.clip, self.clip)


class Standardized(nn.Module):
    """``model(standardizer(x))``; exposes the wrapped model's ``input_dim``, ``input_shape`` and ``spec``."""

    def __init__(self, model: nn.Module, dim: int) -> None:
        super().__init__()
        self.standardizer = RunningStandardizer(dim)
        self.model = model
        self.input_dim = dim
        for attr in ("input_shape", "spec"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: Tensor) -> Any:
        return self.model(self.standardizer(x))
