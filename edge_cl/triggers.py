"""When to consolidate, decided from the training-loss stream alone (no task boundaries).

- ``plateau``: the loss rose significantly above the last plateau (a peak: new data) and has since
  stopped falling (a new plateau: it was learned), as in Aljundi et al., "Task-Free Continual
  Learning" (CVPR 2019). Thresholds are in standard errors, so they do not depend on the loss scale.
- ``adwin`` / ``page-hinkley``: a river drift detector on the loss fires when the loss level rises.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol


class ConsolidationTrigger(Protocol):
    """Observes one loss per step; returns True when the learner should consolidate."""

    name: str
    fired: int

    def observe(self, loss: float) -> bool: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _mean_var(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    return mean, sum((v - mean) ** 2 for v in values) / max(n - 1, 1)


class PlateauTrigger:
    """Fires when the loss settles on a plateau after a significant peak.

    Losses are averaged over consecutive windows of ``window`` steps. A window whose mean exceeds the
    last plateau's mean by ``peak_z`` standard errors and by ``peak_rel`` of that mean marks a peak (the
    first window always does: nothing is learned yet). After a peak, a window is a plateau, and the
    trigger fires, when its mean moved from the previous window's by less than ``plateau_z`` standard
    errors or less than ``plateau_rel`` of it, in either direction (a rise is not a plateau; a slow
    decline of smooth, large-batch losses still counts as settled), and, after a later peak, the loss
    has come back at least ``recovery`` of the way from the peak to the previous plateau. Between
    peaks the plateau level follows the loss down, so peaks are measured from the lowest settled level.
    """

    name = "plateau"

    def __init__(self, window: int = 25, peak_z: float = 4.0, plateau_z: float = 1.0, peak_rel: float = 0.2,
                 plateau_rel: float = 0.05, recovery: float = 0.5) -> None:
        if window < 2:
            raise ValueError(f"trigger window must be >= 2 steps, got {window}")
        self.window, self.peak_z, self.plateau_z = int(window), float(peak_z), float(plateau_z)
        self.peak_rel, self.plateau_rel, self.recovery = float(peak_rel), float(plateau_rel), float(recovery)
        self._peak_mean = 0.0  # highest window mean since the current peak began
        self._values: list[float] = []
        self._prev: tuple[float, float] | None = None      # (mean, var) of the previous window
        self._plateau: tuple[float, float] | None = None   # (mean, var) of the last plateau
        self._in_peak = False
        self.fired = 0

    def observe(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        self._values.append(float(loss))
        if len(self._values) < self.window:
            return False
        mean, var = _mean_var(self._values)
        self._values.clear()
        fire = False
        if not self._in_peak and self._plateau is not None and mean < self._plateau[0] - self._tolerance(
                mean, var, *self._plateau):
            self._plateau = (mean, var)  # clearly still improving after the plateau: measure peaks from here
        if not self._in_peak:
            if self._plateau is None:
                self._in_peak, self._peak_mean = True, mean
            else:
                p_mean, p_var = self._plateau
                margin = max(self.peak_z * math.sqrt((var + p_var) / self.window), self.peak_rel * abs(p_mean))
                if mean > p_mean + margin:
                    self._in_peak, self._peak_mean = True, mean
        elif self._prev is not None:
            self._peak_mean = max(self._peak_mean, mean)
            q_mean, q_var = self._prev
            tolerance = self._tolerance(mean, var, q_mean, q_var)
            recovered = self._plateau is None or (
                mean <= self._peak_mean - self.recovery * (self._peak_mean - self._plateau[0]))
            if recovered and abs(mean - q_mean) < tolerance:
                self._in_peak, self._plateau, fire = False, (mean, var), True
                self.fired += 1
        self._prev = (mean, var)
        return fire

    def _tolerance(self, mean: float, var: float, other_mean: float, other_var: float) -> float:
        """How far two window means may differ and still be 'the same level'."""
        return max(self.plateau_z * math.sqrt((var + other_var) / self.window), self.plateau_rel * abs(other_mean))

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self._values), "prev": self._prev, "plateau": self._plateau,
                "in_peak": self._in_peak, "peak_mean": self._peak_mean, "fired": self.fired}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._values = [float(v) for v in state["values"]]
        self._prev = None if state["prev"] is None else tuple(state["prev"])  # type: ignore[assignment]
        self._plateau = None if state["plateau"] is None else tuple(state["plateau"])  # type: ignore[assignment]
        self._in_peak, self.fired = bool(state["in_peak"]), int(state["fired"])
        self._peak_mean = float(state.get("peak_mean", 0.0))


class DriftTrigger:
    """Fires when a river drift detector (ADWIN or Page-Hinkley) sees the loss level rise.

    river's detectors cannot be serialised without pickle, so the trigger keeps the losses fed since
    the detector was (re)built, at most ``history`` of them, and rebuilds the detector from them on load
    and whenever the history is trimmed. A detection where the loss fell (learning progress) is ignored.
    """

    def __init__(self, detector: str = "adwin", history: int = 2000, recent: int = 20, **params: Any) -> None:
        # Imported here: river.drift loads scipy (about 0.75 s), which the default plateau trigger never needs.
        from edge_cl.extras import require

        drift = require("river.drift", "river", f"trigger {detector!r}")

        factories = {"adwin": drift.ADWIN, "page-hinkley": drift.PageHinkley}
        if detector not in factories:
            raise ValueError(f"trigger detector {detector!r} is unknown; use one of {sorted(factories)}")
        if history < 2 * recent:
            raise ValueError(f"trigger history ({history}) must be at least twice recent ({recent})")
        self.name = detector
        self._factory, self._params = factories[detector], params
        self.history, self.recent = int(history), int(recent)
        self._losses: deque[float] = deque()
        self._detector = self._factory(**self._params)
        self.detections = 0
        self.fired = 0

    def _rebuild(self, keep: list[float]) -> None:
        self._detector = self._factory(**self._params)
        self._losses = deque()
        for v in keep:
            self._losses.append(v)
            self._detector.update(v)

    def observe(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        self._losses.append(float(loss))
        self._detector.update(float(loss))
        if not self._detector.drift_detected:
            if len(self._losses) > self.history:
                self._rebuild(list(self._losses)[-self.history // 2:])
            return False
        self.detections += 1
        values = list(self._losses)
        recent, before = values[-self.recent:], values[:-self.recent]
        rose = bool(before) and sum(recent) / len(recent) > sum(before) / len(before)
        # Start afresh from the new level so the next change is measured against it.
        self._rebuild(recent)
        if rose:
            self.fired += 1
        return rose

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "losses": list(self._losses), "detections": self.detections,
                "fired": self.fired}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["name"] != self.name:
            raise ValueError(f"saved trigger is {state['name']!r}, this learner uses {self.name!r}")
        self._rebuild([float(v) for v in state["losses"]])
        self.detections, self.fired = int(state["detections"]), int(state["fired"])


TriggerFactory = Callable[..., ConsolidationTrigger]

# name -> factory(**params); ``register_trigger`` adds entries (built-ins below).
_TRIGGERS: dict[str, TriggerFactory] = {}


def register_trigger(name: str, factory: TriggerFactory) -> None:
    """Make ``factory(**trigger_params)`` usable as ``trigger=name`` in the learner and the config."""
    if not name or name != name.lower() or name == "none":
        raise ValueError(f"trigger name {name!r} must be a non-empty lower-case name other than 'none'")
    _TRIGGERS[name] = factory


def available_triggers() -> list[str]:
    """Names of every registered trigger."""
    return sorted(_TRIGGERS)


register_trigger("plateau", PlateauTrigger)
register_trigger("adwin", lambda **params: DriftTrigger("adwin", **params))
register_trigger("page-hinkley", lambda **params: DriftTrigger("page-hinkley", **params))
TRIGGERS = tuple(available_triggers())


def make_trigger(name: str | None, **params: Any) -> ConsolidationTrigger | None:
    """Build the trigger registered as ``name`` (None or 'none': never consolidate)."""
    if name is None or name == "none":
        return None
    factory = _TRIGGERS.get(name.lower())
    if factory is None:
        raise ValueError(f"trigger={name!r} is unknown; use one of {available_triggers()} or None")
    try:
        return factory(**params)
    except TypeError as exc:
        raise ValueError(f"trigger_params {params} do not fit trigger {name!r}: {exc}") from None
