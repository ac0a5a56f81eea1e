"""Parity-gate inputs taken from a replay buffer without a random draw.

Exporting must leave the learner exactly as it was. Picking the inputs with ``buffer.sample`` draws from the
buffer's generator, which is the learner's own: every later replay draw shifted, and one snapshot at step 20
changed the final weights by up to 0.09. Evenly spaced slots cover the buffer as well for a parity check.
"""

from __future__ import annotations

from typing import Any

import torch


def buffer_inputs(buffer: Any, k: int) -> torch.Tensor | None:
    """Up to ``k`` stored inputs (float32, CPU, ``[k, D]``) at evenly spaced slots; None when the buffer is empty."""
    n = len(buffer)
    if n == 0 or k <= 0:
        return None
    k = min(k, n)
    slots = torch.arange(k, dtype=torch.int64, device=buffer.x.device) * n // k
    return buffer.codec.decode(buffer.x.index_select(0, slots)).detach().to("cpu", torch.float32)
