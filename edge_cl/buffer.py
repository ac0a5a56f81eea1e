"""Reservoir replay buffer: a fixed-capacity sample store on the learner's device.

Each stored sample holds its input (in the storage codec), its label and any per-sample fields the
learner's methods declare (e.g. the logits DER stores), all preallocated at capacity.

Algorithm R (Vitter 1985): after ``n`` inserts every sample seen has been kept with probability
``capacity / n``, with no task boundaries. The class-balanced variant (Chrysakis & Moens 2020, CBRS)
evicts from the currently largest class so that rare classes survive in imbalanced streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from edge_cl.buffer_storage import StorageCodec
from edge_cl.methods.base import SampleField

LABEL_DTYPE = torch.int64  # labels as drawn (what cross-entropy takes); stored in label_dtype(num_classes)


def label_dtype(num_classes: int | None) -> torch.dtype:
    """The smallest integer type that holds class ids ``0 .. num_classes - 1`` (int64 when unknown): int64 costs 8
    bytes a sample, a third of a 6-feature sample's bytes in float16."""
    if num_classes is None:
        return LABEL_DTYPE
    for dtype, limit in ((torch.uint8, 256), (torch.int16, 1 << 15), (torch.int32, 1 << 31)):
        if num_classes <= limit:
            return dtype
    return LABEL_DTYPE


class ReservoirBuffer:
    """Fixed-capacity reservoir of ``(x, y, *fields)``, x stored with ``codec``, all on ``device``."""

    def __init__(self, capacity: int, input_dim: int, *, device: torch.device | str = "cpu",
                 codec: StorageCodec | None = None, class_balanced: bool = False,
                 generator: torch.Generator | None = None, fields: Mapping[str, SampleField] | None = None,
                 num_classes: int | None = None) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        if input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        self.capacity = int(capacity)
        self.input_dim = int(input_dim)
        self.device = torch.device(device)
        self.codec = codec or StorageCodec()
        self.class_balanced = bool(class_balanced)
        self.generator = generator or torch.Generator(device=self.device).manual_seed(0)
        if self.generator.device.type != self.device.type:
            raise ValueError(f"generator is on {self.generator.device}, buffer on {self.device}: use one device")
        self.x = torch.zeros((self.capacity, self.input_dim), dtype=self.codec.dtype, device=self.device)
        self.y = torch.zeros((self.capacity,), dtype=label_dtype(num_classes), device=self.device)
        self.fields = dict(fields or {})
        clash = set(self.fields) & {"x", "y"}
        if clash:
            raise ValueError(f"per-sample field names {sorted(clash)} are reserved for the input and the label")
        self.values: dict[str, Tensor] = {
            name: torch.zeros((self.capacity, *f.shape), dtype=f.dtype, device=self.device)
            for name, f in self.fields.items()}
        self.size = 0
        self.seen = 0
        self._class_counts: dict[int, int] = {}  # stored samples per class (class-balanced mode)
        self._class_seen: dict[int, int] = {}    # stream samples per class (class-balanced mode)

    @staticmethod
    def field_bytes(input_dim: int, codec: StorageCodec | None = None,
                    fields: Mapping[str, SampleField] | None = None, num_classes: int | None = None) -> dict[str, int]:
        """Bytes one stored sample costs, by field: the encoded input, its label, and each declared field."""
        codec = codec or StorageCodec()
        out = {"x": input_dim * codec.element_bytes,
               "y": torch.empty((), dtype=label_dtype(num_classes)).element_size()}
        out.update({name: f.bytes for name, f in (fields or {}).items()})
        return out

    @staticmethod
    def bytes_per_sample(input_dim: int, codec: StorageCodec | None = None,
                         fields: Mapping[str, SampleField] | None = None, num_classes: int | None = None) -> int:
        """Bytes one stored sample costs: the encoded input, its label and every declared field."""
        return sum(ReservoirBuffer.field_bytes(input_dim, codec, fields, num_classes).values())

    def __len__(self) -> int:
        return self.size

    def tensors(self) -> list[Tensor]:
        """The tensors this buffer owns (for byte accounting)."""
        return [self.x, self.y, *self.values.values()]

    def tensors_by_field(self) -> dict[str, Tensor]:
        """The buffer's tensors by field name (``x``, ``y`` and the declared fields)."""
        return {"x": self.x, "y": self.y, **self.values}

    def add(self, x: Tensor, y: Tensor, values: Mapping[str, Tensor] | None = None) -> None:
        """Offer a batch ``x [B, D]`` (float32, on this device) with labels ``y [B]`` and the declared
        per-sample ``values`` (each ``[B, *shape]``) to the reservoir."""
        if x.ndim != 2 or x.shape[1] != self.input_dim or y.shape != (x.shape[0],):
            raise ValueError(f"expected x [B, {self.input_dim}] and y [B], got {tuple(x.shape)} and {tuple(y.shape)}")
        values = dict(values or {})
        if set(values) != set(self.fields):
            raise ValueError(f"buffer fields are {sorted(self.fields)}, got values for {sorted(values)}")
        for name, v in values.items():
            if tuple(v.shape) != (x.shape[0], *self.fields[name].shape):
                raise ValueError(f"field {name!r} expects [B, *{self.fields[name].shape}], got {tuple(v.shape)}")
        if self.capacity == 0 or x.shape[0] == 0:
            self.seen += x.shape[0]
            return
        if self.class_balanced:
            self._add_class_balanced(x, y, values)
        else:
            self._add_reservoir(x, y, values)

    def _add_reservoir(self, x: Tensor, y: Tensor, values: dict[str, Tensor]) -> None:
        b = x.shape[0]
        draws = torch.rand(b, generator=self.generator, device=self.device, dtype=torch.float64).tolist()
        # Sample i of the batch is the n-th of the stream (n = seen + i + 1): it takes slot n - 1 while the
        # buffer fills, then slot j ~ U[0, n) if j < capacity. Decided in Python: b is a micro-batch.
        slot_of_row: dict[int, int] = {}
        for i, u in enumerate(draws):
            n = self.seen + i + 1
            slot = n - 1 if n <= self.capacity else int(u * n)
            if slot < self.capacity:
                slot_of_row[slot] = i  # algorithm R is sequential: a later sample wins a shared slot
        self.seen += b
        self.size = min(self.seen, self.capacity)
        if not slot_of_row:
            return
        slots = torch.tensor(list(slot_of_row), dtype=torch.int64).to(self.device, non_blocking=True)
        rows = torch.tensor(list(slot_of_row.values()), dtype=torch.int64).to(self.device, non_blocking=True)
        self.x.index_copy_(0, slots, self.codec.encode(x.index_select(0, rows)))
        self.y.index_copy_(0, slots, y.index_select(0, rows).to(self.y.dtype))
        for name, v in values.items():
            self.values[name].index_copy_(0, slots, cast_to_field(v.detach().index_select(0, rows), self.values[name].dtype))

    def _add_class_balanced(self, x: Tensor, y: Tensor, values: dict[str, Tensor]) -> None:
        # CBRS decides per sample from the class counts, so this path loops over the (small) micro-batch.
        labels = y.tolist()
        for i, label in enumerate(labels):
            self.seen += 1
            self._class_seen[label] = self._class_seen.get(label, 0) + 1
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            else:
                largest = max(self._class_counts.values())
                if self._class_counts.get(label, 0) < largest:
                    # Sorted: the counts' dict order is first-seen live and label order after a load, and the draw
                    # among the largest classes must not depend on which (a resumed run evicts as an unbroken one).
                    full = sorted(c for c, k in self._class_counts.items() if k == largest)
                    victim_class = full[self._randint(len(full))]
                    slot = self._random_slot_of(victim_class)
                else:
                    # Reservoir sampling within the sample's own class.
                    stored, seen = self._class_counts[label], self._class_seen[label]
                    if self._randint(seen) >= stored:
                        continue
                    slot = self._random_slot_of(label)
                    victim_class = label
                self._class_counts[victim_class] -= 1
            self.x[slot] = self.codec.encode(x[i])
            self.y[slot] = label
            for name, v in values.items():
                self.values[name][slot] = cast_to_field(v[i].detach(), self.values[name].dtype)
            self._class_counts[label] = self._class_counts.get(label, 0) + 1

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator, device=self.device).item())

    def _random_slot_of(self, label: int) -> int:
        slots = torch.nonzero(self.y[: self.size] == label).squeeze(1)
        return int(slots[self._randint(slots.numel())].item())

    def sample(self, k: int) -> tuple[Tensor, Tensor]:
        """``k`` stored samples drawn uniformly (with replacement), decoded to float32: ``(x [k, D], y [k])``.

        Returns everything stored (in slot order) when the buffer holds ``k`` samples or fewer.
        """
        drawn = self.draw(k)
        return drawn["x"], drawn["y"]

    def draw(self, k: int) -> dict[str, Tensor]:
        """Like :meth:`sample`, with every field: ``{"x": [k, D] float32, "y": [k], name: [k, *shape]}``."""
        return self.draw_with_slots(k)[0]

    def draw_with_slots(self, k: int) -> tuple[dict[str, Tensor], Tensor]:
        """:meth:`draw`, plus the slots the rows came from (to :meth:`replace` them later)."""
        if k <= 0 or self.size == 0:
            out = {"x": torch.empty((0, self.input_dim), device=self.device),
                   "y": torch.empty((0,), dtype=LABEL_DTYPE, device=self.device)}
            out.update({n: v[:0].clone() for n, v in self.values.items()})
            return out, torch.empty((0,), dtype=torch.int64, device=self.device)
        if self.size <= k:
            # clone: a float32 decode is a view, and callers must not be able to write into the buffer
            out = {"x": self.codec.decode(self.x[: self.size]).clone(),
                   "y": self.y[: self.size].to(LABEL_DTYPE, copy=True)}
            out.update({n: v[: self.size].clone() for n, v in self.values.items()})
            return out, torch.arange(self.size, device=self.device)
        idx = torch.randint(self.size, (k,), generator=self.generator, device=self.device)
        out = {"x": self.codec.decode(self.x.index_select(0, idx)), "y": self.y.index_select(0, idx).to(LABEL_DTYPE)}
        out.update({n: v.index_select(0, idx) for n, v in self.values.items()})
        return out, idx

    def replace(self, slots: Tensor, sources: Tensor) -> None:
        """Overwrite the stored rows at ``slots`` with copies of the rows at ``sources`` (every field)."""
        for t in (self.x, self.y, *self.values.values()):
            t.index_copy_(0, slots, t.index_select(0, sources))
        if self.class_balanced:
            self._class_counts = {int(k): int(v) for k, v in self.class_histogram().items()}

    def class_histogram(self) -> dict[int, int]:
        """Stored samples per class label."""
        labels, counts = torch.unique(self.y[: self.size], return_counts=True)
        return dict(zip(labels.tolist(), counts.tolist(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x[: self.size].clone(), "y": self.y[: self.size].clone(), "size": self.size,
                "seen": self.seen, "capacity": self.capacity, "codec": self.codec.kind,
                "class_seen": {str(k): v for k, v in self._class_seen.items()},
                "fields": {n: v[: self.size].clone() for n, v in self.values.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"saved buffer holds {size} samples but this budget gives capacity {self.capacity}; "
                             "load with the same budget_bytes")
        if state["codec"] != self.codec.kind:
            raise ValueError(f"saved buffer uses storage={state['codec']!r}, this learner {self.codec.kind!r}")
        self.x.zero_()
        self.y.zero_()
        self.x[:size] = state["x"].to(self.device)
        self.y[:size] = state["y"].to(self.device, self.y.dtype)  # older states stored int64 labels
        saved = dict(state.get("fields") or {})
        if set(saved) != set(self.values):
            raise ValueError(f"saved buffer has fields {sorted(saved)}, this learner's has {sorted(self.values)}; "
                             "load with the same method")
        for name, v in self.values.items():
            v.zero_()
            v[:size] = saved[name].to(self.device)
        self.size, self.seen = size, int(state["seen"])
        self._class_seen = {int(k): int(v) for k, v in state.get("class_seen", {}).items()}
        self._class_counts = {int(k): int(v) for k, v in self.class_histogram().items()} if self.class_balanced else {}


_FINITE_MAX = {torch.float16: 65504.0, torch.bfloat16: 3.3895313892515355e38}


def cast_to_field(v: Tensor, dtype: torch.dtype) -> Tensor:
    """``v`` in a field's storage dtype, saturating at its largest finite value: a value beyond float16's range
    is stored as that bound, not as infinity (which would poison every loss that replays it). Only the rows
    that are kept are cast, so the bound costs nothing on steps that insert nothing."""
    bound = _FINITE_MAX.get(dtype)
    if bound is not None and v.is_floating_point() and torch.finfo(v.dtype).max > bound:
        v = v.clamp(-bound, bound)
    return v.to(dtype)
