"""Plain online fine-tuning: the learner's step with nothing added, the baseline every method is compared with."""

from __future__ import annotations

from edge_cl.methods.base import Method
from edge_cl.methods.registry import register


@register
class FineTuning(Method):
    """Cross-entropy on the new micro-batch only; no buffer, no penalty."""

    name = "sgd"
