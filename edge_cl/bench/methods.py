"""Benchmark method names and the OnlineLearner arguments each one means; all share one model and one budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Methods run through OnlineLearner, in report order.
LEARNER_METHODS = ("sgd", "er", "ewc", "mas", "er+ewc", "er+mas")
# Methods run by edge_cl.bench.baselines (no OnlineLearner).
BASELINE_METHODS = ("joint", "no-change", "bare-sgd", "bare-er")
ALL_METHODS = LEARNER_METHODS + BASELINE_METHODS


@dataclass(frozen=True)
class MethodSpec:
    """What a method name stands for: replay on/off and which importance, if any."""

    name: str
    replay: bool
    importance: str | None

    def learner_kwargs(self, replay_batch: int, trigger: str | None = "plateau") -> dict[str, Any]:
        """Keyword arguments for OnlineLearner (besides model, budget, lr, device, seed)."""
        kwargs: dict[str, Any] = {"importance": self.importance, "replay_batch": replay_batch if self.replay else 0}
        # Consolidation only matters with an importance; replay-only runs never consolidate.
        kwargs["trigger"] = trigger if self.importance is not None else None
        return kwargs

    @property
    def bare_equivalent(self) -> str:
        """The bare hand-written PyTorch loop that does the same work, for the overhead comparison."""
        return "bare-er" if self.replay else "bare-sgd"


_SPECS = {
    "sgd": MethodSpec("sgd", replay=False, importance=None),
    "er": MethodSpec("er", replay=True, importance=None),
    "ewc": MethodSpec("ewc", replay=False, importance="ewc"),
    "mas": MethodSpec("mas", replay=False, importance="mas"),
    "er+ewc": MethodSpec("er+ewc", replay=True, importance="ewc"),
    "er+mas": MethodSpec("er+mas", replay=True, importance="mas"),
}


def method_spec(name: str) -> MethodSpec:
    """The spec of a learner method (``sgd``, ``er``, ``ewc``, ``mas``, ``er+ewc``, ``er+mas``)."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"method {name!r} is not an OnlineLearner method; use one of {', '.join(LEARNER_METHODS)}"
                         ) from None


def parse_methods(text: str) -> list[str]:
    """Split ``"sgd,er,er+mas"`` into names, checking each; duplicates are dropped, order kept."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--methods {text!r} names no method; use a comma list of {', '.join(ALL_METHODS)}")
    bad = [n for n in names if n not in ALL_METHODS]
    if bad:
        raise ValueError(f"--methods: unknown method(s) {bad}; use a comma list of {', '.join(ALL_METHODS)}")
    return list(dict.fromkeys(names))
