"""The router that contexts, packnet and pnn share: each slot's loss on the new rows over the last steps, and the
rule that moves prediction to another slot when it explains the recent data clearly better.

A slot is a context (a head, a set of owned weights, a column). After every step its method records each slot's
loss on the step's new rows; a slot's level is the lowest windowed mean it reached while active. The router prefers
another slot only when the active one has drifted above its own level, the other is near its own level (a returning
concept, not a lucky one), and beats the active one by the margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

SERIALS = 1 << 15  # serials fit the int16 per-sample field
NO_SERIAL = -1  # the serial of a free slot


class LossRouter:
    """Mixed into a method that holds ``k`` slots routed by their windowed loss.

    The method owns the state (its tensors and its saved state list them): ``window`` ([k, window_steps], one of
    its tensors), ``pos`` and ``filled`` (ring position, steps held), ``usage`` and ``level`` per slot, ``serial_of``
    per slot (``NO_SERIAL`` when free) and ``next_serial``; and settings ``k``, ``window_steps``, ``tolerance``,
    ``margin``; ``active`` is the slot that predicts now.
    """

    k: int
    window_steps: int
    tolerance: float
    margin: float
    window: Tensor
    pos: int
    filled: int
    usage: list[int]
    level: list[float]
    serial_of: list[int]
    next_serial: int
    active: int

    def _record_losses(self, losses: Sequence[float], batch: int) -> None:
        """Enter one step's loss of each slot (slots past ``len(losses)`` get 0: free, never read) and account the
        step's ``batch`` rows to the active slot."""
        row = torch.zeros((self.k,), dtype=torch.float32)
        row[:len(losses)] = torch.tensor(list(losses), dtype=torch.float32)
        self.window[:, self.pos] = row.to(self.window.device)
        self.pos = (self.pos + 1) % self.window_steps
        self.filled = min(self.filled + 1, self.window_steps)
        self.usage[self.active] += batch
        if self.filled == self.window_steps:
            self.level[self.active] = min(self.level[self.active], float(self.window[self.active].mean()))

    def window_losses(self) -> list[float | None]:
        """Each slot's mean loss over the window (None for a free slot, an empty window or a non-finite mean)."""
        if self.filled == 0:
            return [None] * self.k
        means = self.window[:, :self.filled].mean(1).tolist()
        return [m if self.serial_of[i] != NO_SERIAL and math.isfinite(m) else None for i, m in enumerate(means)]

    def _better_slot(self) -> int | None:
        """The slot whose windowed loss beats the active one's by the margin (the best such) and is near the lowest
        it reached while active (a returning concept), else None; None too while the window is not full, or while
        the active slot explains the data about as well as ever (no flapping)."""
        if self.filled < self.window_steps:
            return None
        means = self.window_losses()
        mine = means[self.active]
        if mine is None or mine <= self.level[self.active] + self.tolerance:
            return None
        best = min((i for i, m in enumerate(means) if m is not None and i != self.active
                    and m <= self.level[i] + self.tolerance),
                   key=lambda i: means[i], default=None)  # type: ignore[arg-type,return-value]
        if best is None or not means[best] < (1.0 - self.margin) * mine:  # type: ignore[operator]
            return None
        return best

    def _new_serial(self) -> int:
        """A serial no slot holds (serials wrap at SERIALS, the int16 per-sample field)."""
        used = set(self.serial_of)
        serial = self.next_serial
        while serial in used:
            serial = (serial + 1) % SERIALS
        self.next_serial = (serial + 1) % SERIALS
        return serial

    def _slot_to_open(self, age: Sequence[int]) -> tuple[int, bool] | None:
        """Where a new slot opens: the first free slot ``(slot, False)``, else the least used slot other than the
        active one, ties to the lower ``age`` ``(slot, True)`` (its context is evicted); None with one slot."""
        free = [i for i, s in enumerate(self.serial_of) if s == NO_SERIAL]
        if free:
            return free[0], False
        others = [i for i in range(self.k) if i != self.active]
        if not others:
            return None
        return min(others, key=lambda i: (self.usage[i], age[i])), True

    @property
    def active_serial(self) -> int:
        """The serial of the context that predicts now."""
        return self.serial_of[self.active]

    def contexts(self) -> list[int]:
        """Serials of the contexts held (free slots left out), in slot order."""
        return [s for s in self.serial_of if s != NO_SERIAL]
