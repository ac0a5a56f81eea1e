"""Sample codecs for the replay buffer: how many bytes one stored input element costs.

``float32`` is exact; ``float16`` halves the bytes (about 3 significant digits, saturating at +-65504: the
learner's default, see LearnerConfig.storage); ``uint8`` quarters them for inputs in a known
range ``[lo, hi]`` (values outside are clamped), e.g. pixels or normalised sensor readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

STORAGE_KINDS = ("float32", "float16", "uint8")
F16_MAX = 65504.0  # float16's largest finite value


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
            return stored.to(torch.float32).mul_((self.hi - self.lo) / 255.0).add_(self.lo)
        return stored.to(torch.float32)
