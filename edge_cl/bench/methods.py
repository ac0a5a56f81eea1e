"""Benchmark method names: any registered learner method or '+' combination, plus the baselines.

Every learner method shares one model and one budget rule; baselines (joint, no-change, the bare PyTorch
loops) run without OnlineLearner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_cl import methods as registry
from edge_cl.methods import Method

# Methods run by edge_cl.bench.baselines (no OnlineLearner).
BASELINE_METHODS = ("joint", "no-change", "bare-sgd", "bare-er")
# The learner methods a default bench run compares.
DEFAULT_LEARNER_METHODS = ("sgd", "er", "ewc", "mas", "er+ewc", "er+mas")


@dataclass(frozen=True)
class MethodSpec:
    """What a learner method name stands for: its canonical combination and what it needs."""

    name: str
    replay: bool           # a method of the combination replays from the buffer
    consolidates: bool     # a method of the combination acts on the consolidation trigger

    def learner_kwargs(self, replay_batch: int, trigger: str | None = "plateau") -> dict[str, Any]:
        """Keyword arguments for OnlineLearner (besides model, budget, lr, device, seed)."""
        # Consolidation only matters to methods that act on it; others run without a trigger (cheaper).
        return {"method": self.name, "replay_batch": replay_batch if self.replay else 0,
                "trigger": trigger if self.consolidates else None}

    def declared_settings(self) -> set[str]:
        """Names of the settings the methods of this combination declare."""
        return {k for n in registry.parse(self.name) for k in registry.get(n).Settings.model_fields}

    @property
    def bare_equivalent(self) -> str:
        """The bare hand-written PyTorch loop that does the same work, for the overhead comparison."""
        return "bare-er" if self.replay else "bare-sgd"


def is_learner_method(name: str) -> bool:
    """True for a registered method or '+' combination (not a baseline)."""
    if name in BASELINE_METHODS:
        return False
    try:
        registry.parse(name)
    except ValueError:
        return False
    return True


def method_spec(name: str) -> MethodSpec:
    """The spec of a learner method, e.g. ``er``, ``er+ewc`` or any registered name."""
    try:
        names = registry.parse(name)
    except ValueError as exc:
        raise ValueError(f"method {name!r} is not an OnlineLearner method: {exc}") from None
    classes = [registry.get(n) for n in names]
    return MethodSpec("+".join(names), replay=any(c.uses_buffer for c in classes),
                      consolidates=any(c.consolidate is not Method.consolidate for c in classes))


def parse_methods(text: str) -> list[str]:
    """Split ``"sgd,er,er+mas"`` into names, checking each; duplicates are dropped, order kept."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    offered = f"registered methods ({', '.join(registry.available())}, combined with '+') or baselines " \
              f"({', '.join(BASELINE_METHODS)})"
    if not names:
        raise ValueError(f"--methods {text!r} names no method; use a comma list of {offered}")
    bad = [n for n in names if n not in BASELINE_METHODS and not is_learner_method(n)]
    if bad:
        raise ValueError(f"--methods: unknown method(s) {bad}; use a comma list of {offered}")
    return list(dict.fromkeys(n if n in BASELINE_METHODS else method_spec(n).name for n in names))
