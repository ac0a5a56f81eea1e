"""Byte accounting for everything a learner owns, and sizing of the replay buffer from what is left."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from torch import Tensor

# The learner's own parts; each method adds one part under its name, reported between optimizer and buffer.
CORE_PARTS = ("parameters", "gradients", "optimizer")
BUFFER_PART = "buffer"
SCRATCH_PART = "scratch"


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the storages behind ``tensors``, each storage counted once and whole (views of one buffer,
    such as the learner's gradients, count the buffer once)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for t in tensors:
        key = (str(t.device), t.untyped_storage().data_ptr()) if t.numel() else (str(t.device), id(t))
        if key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes() if t.numel() else 0
    return total


@dataclass(frozen=True)
class MemoryBudget:
    """Splits ``budget_bytes`` into the fixed state (``fixed`` bytes by part) and the replay buffer.

    The buffer gets what is left: ``capacity = (budget - fixed) // bytes_per_sample``, capped at
    ``max_buffer_samples`` when given. Raises ValueError with the figures when the budget cannot hold
    the fixed part plus ``min_buffer_samples``.
    """

    budget_bytes: int
    fixed: Mapping[str, int]
    bytes_per_sample: int
    min_buffer_samples: int = 0
    max_buffer_samples: int | None = None
    buffer_capacity: int = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.budget_bytes, bool) or not isinstance(self.budget_bytes, int) or self.budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be a positive integer, got {self.budget_bytes!r}")
        if BUFFER_PART in self.fixed:
            raise ValueError(f"'{BUFFER_PART}' is sized from what is left, it cannot be a fixed part")
        negative = {k: v for k, v in self.fixed.items() if v < 0}
        if negative:
            raise ValueError(f"budget parts cannot be negative: {negative}")
        needed = self.fixed_bytes + self.min_buffer_samples * self.bytes_per_sample
        if needed > self.budget_bytes:
            lines = ", ".join(f"{k} {v:,}" for k, v in self.fixed.items() if v)
            extra = (f" + {self.min_buffer_samples} buffer samples x {self.bytes_per_sample:,} B"
                     if self.min_buffer_samples else "")
            raise ValueError(
                f"budget_bytes={self.budget_bytes:,} is too small: this learner needs at least {needed:,} bytes "
                f"({lines}{extra}). Raise budget_bytes to {needed:,} or more, or shrink the model, the replay "
                "batch, or use compact storage / a method with less state.")
        capacity = (self.budget_bytes - self.fixed_bytes) // self.bytes_per_sample if self.bytes_per_sample else 0
        if self.max_buffer_samples is not None:
            capacity = min(capacity, self.max_buffer_samples)
        object.__setattr__(self, "buffer_capacity", int(capacity))

    @property
    def fixed_bytes(self) -> int:
        return sum(self.fixed.values())

    @property
    def reserved_bytes(self) -> int:
        """Fixed part plus the buffer at full capacity: the most the learner will ever hold."""
        return self.fixed_bytes + self.buffer_capacity * self.bytes_per_sample

    @staticmethod
    def required(fixed: Mapping[str, int], bytes_per_sample: int, buffer_samples: int) -> int:
        """The budget that gives exactly ``buffer_samples`` of buffer on top of ``fixed``."""
        return sum(fixed.values()) + buffer_samples * bytes_per_sample

    def report(self, owned: Mapping[str, list[Tensor]], buffer_size: int) -> dict[str, object]:
        """Bytes used by part (measured from the tensors in ``owned``, in its order) against the budget."""
        used = {part: tensor_bytes(tensors) for part, tensors in owned.items()}
        total = tensor_bytes(t for tensors in owned.values() for t in tensors)
        return {
            "budget_bytes": self.budget_bytes,
            "used_bytes": total,
            "free_bytes": self.budget_bytes - total,
            "reserved_bytes": self.reserved_bytes,
            "buffer_capacity": self.buffer_capacity,
            "buffer_size": buffer_size,
            "bytes_per_sample": self.bytes_per_sample,
            "parts": used,
            **{f"{part}_bytes": n for part, n in used.items()},
        }
