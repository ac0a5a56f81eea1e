"""A learner step is a transaction: if a method raises in any hook, the learner's whole state is put back.

The step keeps, before it changes anything, what it may have to restore: counters, the random state, the model's
buffers (BatchNorm's running statistics, the input standardiser), every stateful method's step state (its whole
state by default; importance methods keep their running estimate and counters, and their whole state only right
before they consolidate, since omega and the anchor change nowhere else), and --
only when a method works after the weights moved (``before_step``, ``after_update``, ``consolidate``) -- the
weights, the optimizer's state and the trigger's. Combinations whose methods do no such work (ER, DER++) pay for
neither copy: nothing a method runs can fail after their optimizer step, since the buffer insert and the counters
come last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from edge_cl.methods.base import Method

if TYPE_CHECKING:
    from edge_cl.learner import OnlineLearner

# Hooks that run once the weights may have moved: a failure there needs the weights and optimizer state back.
POST_STEP_HOOKS = ("before_step", "after_update", "consolidate")
STEP_HOOKS = ("replay_draws", "begin_step", "before_forward", "before_update", "sample_values", "before_step", "after_update")


class MethodError(RuntimeError):
    """A method raised in one of its hooks; the learner's state was restored to what it was before the call."""

    def __init__(self, method: str, hook: str, cause: BaseException) -> None:
        self.method, self.hook, self.cause = method, hook, cause
        super().__init__(f"method {method!r} raised in {hook}: {type(cause).__name__}: {cause} (the step was rolled "
                         "back: the learner's state is as it was before this call)")


def call(method: Method, hook: str, *args: Any) -> Any:
    """``method.<hook>(*args)``, with any exception turned into a :class:`MethodError` naming the method and hook."""
    try:
        return getattr(method, hook)(*args)
    except MethodError:
        raise
    except Exception as exc:  # whatever a plugin raises is reported with its name and hook
        raise MethodError(method.name, hook, exc) from exc


def overrides(method: Method | type[Method], hook: str) -> bool:
    """True when ``method`` (an instance or a class) defines ``hook`` itself (not the base's no-op)."""
    cls = method if isinstance(method, type) else type(method)
    return getattr(cls, hook) is not getattr(Method, hook)


def keeps_state(method: Method) -> bool:
    """True when ``method`` has anything to save (tensors, or a state of its own)."""
    return bool(method.tensors()) or overrides(method, "state_dict")


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


class Snapshot:
    """What one :meth:`OnlineLearner.learn` call may change, kept before it changes it."""

    def __init__(self, learner: OnlineLearner, stateful: list[Method], post_step: bool) -> None:
        self.counters = learner.counters.values()
        self.other_counts = (learner.consolidations, learner.unlabeled_seen)
        self.generator = learner.generator.get_state()
        self.buffer = (learner.buffer.seen, learner.buffer.size)
        # The model's buffers are listed once by the learner: walking the modules costs more than a small step.
        self.model_buffers = [b.clone() for b in learner.all_buffers] if learner.all_buffers else []
        self.methods = {m.name: m.step_state() for m in stateful}
        self.consolidating: dict[str, Any] = {}  # whole states kept right before consolidate() (see before_consolidate)
        self.params: list[Tensor] | None = None
        self.optimizer: dict[str, Any] | None = None
        self.trigger: dict[str, Any] | None = None
        self.flat_param: Tensor | None = None
        self.optimizer_was_empty = False
        if post_step:
            flat = learner.flat_param
            if flat is not None:
                self.flat_param = flat.clone()  # one copy, not one per tensor
            else:
                self.params = [p.detach().clone() for p in learner.params]
            # A stateless optimizer (plain SGD) has nothing a step can change but state it might create.
            if learner.optimizer.state:
                self.optimizer = _clone(learner.optimizer.state_dict())
            else:
                self.optimizer_was_empty = True
            self.trigger = _clone(learner.trigger.state_dict()) if learner.trigger is not None else None

    def before_consolidate(self, method: Method) -> None:
        """Keep ``method``'s whole state before it consolidates: its step state may leave out what only
        consolidation changes (omega, the anchor)."""
        if method.name in self.methods and method.name not in self.consolidating:
            self.consolidating[method.name] = method.state_dict()

    def restore(self, learner: OnlineLearner) -> None:
        """Put the learner back as it was when this snapshot was taken."""
        with torch.no_grad():
            for dst, src in zip(learner.all_buffers, self.model_buffers, strict=True):
                dst.copy_(src)
            if self.flat_param is not None and learner.flat_param is not None:
                learner.flat_param.copy_(self.flat_param)
            if self.params is not None:
                for p, src in zip(learner.params, self.params, strict=True):
                    p.copy_(src)
        if self.optimizer is not None:
            learner.optimizer.load_state_dict(self.optimizer)
        elif self.optimizer_was_empty:
            learner.optimizer.state.clear()
        if self.trigger is not None and learner.trigger is not None:
            learner.trigger.load_state_dict(self.trigger)
        for m in learner.methods:
            if m.name in self.consolidating:
                m.load_state_dict(self.consolidating[m.name])
            if m.name in self.methods:
                m.load_step_state(self.methods[m.name])
        learner.generator.set_state(self.generator)
        learner.buffer.seen, learner.buffer.size = self.buffer
        learner.counters.restore(self.counters)
        learner.consolidations, learner.unlabeled_seen = self.other_counts
