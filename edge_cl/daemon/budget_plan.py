"""Does the configured learner fit ``learner.budget_bytes``? Planned before start, without building the learner.

``run`` found out only when the learner was built (after the checkpoint was read and the broker dialled), and
``check-config`` never did. The plan is the learner's own (``OnlineLearner.required_bytes``: the fixed parts plus
one replay batch of buffer, the same sum the learner refuses), on a model whose size the config check has
already bounded by the budget, so no large tensor is allocated here.
"""

from __future__ import annotations

from typing import Any

from edge_cl.config import Config


def required_bytes(cfg: Config) -> int:
    """The smallest ``budget_bytes`` the configured learner starts with."""
    from edge_cl.learner import OnlineLearner

    lc = cfg.learner_config()
    options: dict[str, Any] = lc.model_dump(exclude={"budget_bytes", "replay_batch", "device"})
    return OnlineLearner.required_bytes(cfg.build_model(), buffer_samples=lc.replay_batch,
                                        replay_batch=lc.replay_batch, **options)


def problems(cfg: Config) -> list[str]:
    """One line when the budget is too small (or the learner's settings cannot be planned), else none."""
    budget = cfg.learner.budget_bytes
    try:
        needed = required_bytes(cfg)
    except ValueError as exc:
        return [f"learner: {exc}"]
    except Exception as exc:  # noqa: BLE001 - a method's or model's own failure: one line, no traceback
        return [f"learner: cannot plan the byte budget: {type(exc).__name__}: {exc}"]
    if needed > budget:
        return [(f"learner.budget_bytes = {budget:,}: too small; this learner needs at least {needed:,} bytes "
                 f"(model, gradients, optimizer, the methods' state and one replay batch of buffer). Raise it to "
                 f"{needed:,} or more, or shrink the model or learner.replay_batch")]
    return []
