"""What the fleet reads from a learner and how a global model goes into it.

Only the trainable parameters are exchanged (float32, named as in the model's ``state_dict``). Buffers stay
on the device: the standardiser's running statistics and BatchNorm's are summaries of the local stream (as in
FedBN), each device keeps normalising its own inputs.

Method state is left as it is by a merge (unless ``fleet.refresh_after_merge`` asks, :mod:`edge_cl.fleet.refresh`):
the buffer, the optimizer's moments, and an importance method's (EWC, MAS ...) ``omega`` and anchor. The merged weights are then one more move of the weights between two
steps, exactly like a step's: an importance penalty keeps pulling the important weights toward the anchor of
the last consolidation (what this device judged worth protecting) until the trigger consolidates again at the
merged weights. This keeps every invariant of the learner (the flat parameter buffer, the transaction
snapshots, the CUDA-graph addresses: the parameters are written in place, never replaced).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def trainable(learner: Any) -> list[tuple[str, nn.Parameter]]:
    """The learner's trainable parameters with their ``state_dict`` names, in the learner's order."""
    return [(name, p) for name, p in learner.model.named_parameters() if p.requires_grad]


def local_weights(learner: Any) -> dict[str, np.ndarray]:
    """A float32 copy of the trainable parameters (taken between steps, so never half-updated)."""
    return {name: p.detach().to(torch.float32).cpu().numpy().copy() for name, p in trainable(learner)}


def check_global(learner: Any, arrays: dict[str, np.ndarray]) -> None:
    """ValueError naming what does not fit when ``arrays`` is not a model of this learner's architecture."""
    named = trainable(learner)
    mine = [name for name, _ in named]
    if set(arrays) != set(mine):  # names, not order: a transport may reorder them
        missing = [n for n in mine if n not in arrays]
        extra = [n for n in arrays if n not in mine]
        raise ValueError(f"the global model's parameters do not match this learner's (missing {missing}, "
                         f"unknown {extra}); every device of a fleet must run the same model")
    for name, p in named:
        a = arrays[name]
        if tuple(a.shape) != tuple(p.shape):
            raise ValueError(f"parameter {name!r}: the global model has shape {tuple(a.shape)}, this learner "
                             f"{tuple(p.shape)}; every device of a fleet must run the same model")
        if not np.isfinite(a).all():
            raise ValueError(f"parameter {name!r} of the global model has NaN or infinite values; not merged")


@torch.no_grad()
def merge_global(learner: Any, arrays: dict[str, np.ndarray]) -> None:
    """Write the global weights into the learner's parameters in place (call between two steps)."""
    check_global(learner, arrays)
    for name, p in trainable(learner):
        p.copy_(torch.from_numpy(np.asarray(arrays[name])).to(device=p.device, dtype=p.dtype))
