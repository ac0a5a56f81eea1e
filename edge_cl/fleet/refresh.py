"""What a merge may refresh: the method state that was computed from the weights the merge replaced.

- ``logits``: DER's stored logits (the model's outputs on each buffered sample when it arrived) are recomputed by
  the merged model, so DER's logit matching protects the merged function instead of pulling the model back
  towards the local one on the buffer's inputs.
- ``anchors``: an importance method's anchor (EWC, MAS, ... ``theta*``) moves to the merged weights (``omega``,
  what this device judged important, is kept), so the penalty protects the merged model instead of pulling it
  back towards the weights of the device's last consolidation.

Which one pays is measured by ``benchmarks/fleet.py --refresh-after-merge`` (BENCHMARKS.md fleet-refresh); the
daemon's ``fleet.refresh_after_merge`` default follows it. Call between two steps, from the learning thread.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from edge_cl.buffer import cast_to_field
from edge_cl.methods.der import DER
from edge_cl.methods.importance import ImportanceMethod

Refresh = Literal["none", "logits", "anchors", "both"]
REFRESH_CHOICES: tuple[str, ...] = ("none", "logits", "anchors", "both")
CHUNK = 256  # buffered rows per forward: bounds the refresh's activation memory on a small device


def refresh_after_merge(learner: Any, what: str) -> dict[str, int]:
    """Refresh ``what`` (one of :data:`REFRESH_CHOICES`) after a merge; returns what was refreshed (buffered
    rows whose logits were recomputed, importance methods re-anchored)."""
    if what not in REFRESH_CHOICES:
        raise ValueError(f"fleet.refresh_after_merge={what!r} must be one of {', '.join(REFRESH_CHOICES)}")
    done: dict[str, int] = {}
    if what in ("logits", "both"):
        done["logits"] = refresh_logits(learner)
    if what in ("anchors", "both"):
        done["anchors"] = refresh_anchors(learner)
    return done


@torch.no_grad()
def refresh_logits(learner: Any) -> int:
    """Recompute DER's stored logits with the current model; returns the rows refreshed (0 without DER)."""
    stored = learner.buffer.values.get("logits")
    if stored is None or not any(isinstance(m, DER) for m in learner.methods):
        return 0
    buf, model = learner.buffer, learner.model
    n = len(buf)
    was_training = model.training
    model.eval()  # no batch statistics, no running-statistics update: the stored targets are a function of x
    try:
        for start in range(0, n, CHUNK):
            rows = slice(start, min(n, start + CHUNK))
            stored[rows] = cast_to_field(model(buf.codec.decode(buf.x[rows])), stored.dtype)  # in place
    finally:
        model.train(was_training)
    return n


@torch.no_grad()
def refresh_anchors(learner: Any) -> int:
    """Move every importance method's anchor to the current weights (``omega`` kept); returns how many."""
    methods = [m for m in learner.methods if isinstance(m, ImportanceMethod)]
    for m in methods:
        torch._foreach_copy_(m.anchor, m.params)
    return len(methods)
