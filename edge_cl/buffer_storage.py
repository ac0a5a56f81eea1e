"""Sample codecs for the replay buffer: how many bytes one stored input element costs.

``float32`` is exact; ``float16`` halves the bytes (about 3 significant digits, saturating at +-65504);
``uint8`` quarters them for inputs in a known range ``[lo, hi]`` (values outside are clamped), e.g. pixels or
normalised sensor readings. The learner's default, ``auto``, stores float16 unless the first batch learned shows
8-bit data (:func:`lossless_uint8_range`), which uint8 holds exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

STORAGE_KINDS = ("float32", "float16", "uint8")
AUTO_STORAGE = "auto"  # LearnerConfig.storage's default: float16, or uint8 where it is exact (see below)
F16_MAX = 65504.0  # float16's largest finite value
# 8-bit data, recognised on one batch: every value within this of a level k / 255 (float32 keeps k / 255 to ~1e-5),
# and at least this many values and levels, so that a batch of zeros or of on/off flags decides nothing.
GRID_TOLERANCE = 1e-3
MIN_GRID_VALUES = 256
MIN_GRID_LEVELS = 16


def lossless_uint8_range(x: Tensor) -> tuple[float, float] | None:
    """The range ``(lo, hi)`` over which storage='uint8' holds every value of ``x`` exactly, or None.

    8-bit data come as levels k / 255 in [0, 1] (pixels scaled by 1/255) or as integers in [0, 255]; ``x`` qualifies
    when all its values are finite levels of one of those grids and it shows at least MIN_GRID_LEVELS levels in
    MIN_GRID_VALUES values or more."""
    if x.numel() < MIN_GRID_VALUES or not x.is_floating_point():
        return None
    flat = x.detach().reshape(-1).float()
    lo, hi = float(flat.amin()), float(flat.amax())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0:
        return None
    if hi <= 1.0:
        scale, limit = 255.0, (0.0, 1.0)
    elif hi <= 255.0:
        scale, limit = 1.0, (0.0, 255.0)
    else:
        return None
    levels = flat * scale
    if float((levels - levels.round()).abs().amax()) > GRID_TOLERANCE:
        return None
    if int(torch.unique(levels.round()).numel()) < MIN_GRID_LEVELS:
        return None
    return limit


@dataclass(frozen=True)
class StorageCodec:
    """Encodes float32 inputs into the stored dtype and back."""

    kind: str = "float32"
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in STORAGE_KINDS:
            raise ValueError(f"storage={self.kind!r} is not supported; use one of {STORAGE_KINDS}")
        if self.kind == "uint8" and not self.hi > self.lo:
            raise ValueError(f"input_range=({self.lo}, {self.hi}) must have lo < hi for storage='uint8'")

    @property
    def dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float16": torch.float16, "uint8": torch.uint8}[self.kind]

    @property
    def element_bytes(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def encode(self, x: Tensor) -> Tensor:
        if self.kind == "uint8":
            scaled = (x - self.lo) * (255.0 / (self.hi - self.lo))
            return scaled.round_().clamp_(0, 255).to(torch.uint8)
        if self.kind == "float16":
            # Saturate rather than overflow to inf: one stored inf would make every replay of it a skipped step.
            return x.clamp(-F16_MAX, F16_MAX).to(torch.float16)
        return x.to(self.dtype)

    def decode(self, stored: Tensor) -> Tensor:
        if self.kind == "uint8":
            # A division, not a multiplication by its inverse: k / 255 is then the float32 that 8-bit data
            # scaled by 1/255 hold, bit for bit (storage='auto' stores such data as uint8 because it is exact).
            return stored.to(torch.float32).div_(255.0 / (self.hi - self.lo)).add_(self.lo)
        return stored.to(torch.float32)
