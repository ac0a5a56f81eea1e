"""What a learner step reports and counts, shared by every step engine (eager, closed form, fixed-shape)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any


@dataclass(frozen=True)
class LearnStats:
    """What one :meth:`OnlineLearner.learn` step did."""

    step: int               # optimizer steps taken so far (after this one)
    loss: float             # cross-entropy on the new micro-batch, before the update
    new_correct: int        # new samples predicted right before the update (test-then-train)
    batch_size: int
    replay_size: int        # replayed rows in this step, over every draw
    skipped: bool           # True: non-finite loss, nothing was changed
    consolidated: bool      # the trigger fired and the methods consolidated
    penalty: float          # importance penalty value, refreshed every 10 importance estimates and at consolidation
    importance_updated: bool
    seconds: float          # wall time of the step
    lag: int = 0            # how many steps old loss / new_correct / skipped are: 1 on the CUDA-graph step
                            # (the previous call's, read without waiting), 0 eager or with exact_stats=True
    dropped: int = 0        # rows of the call left out for holding NaN / Inf (the others learned; on the CUDA-graph
                            # step, which never waits for the host, such a row skips the whole step instead)
    # The new rows' logits of the step's forward, before the update (learn(keep_logits=True) on the eager step): a
    # torch Tensor [batch, classes], or None.
    logits: Any = field(default=None, compare=False, repr=False)


@dataclass
class StepCounters:
    """The learner's step counters, which an engine advances as its steps complete (the fixed-shape step does so
    when it reads a finished step back, without making the learner wait)."""

    step: int = 0               # optimizer steps taken
    samples_learned: int = 0    # new samples learned (test-then-train counted)
    correct_learned: int = 0    # of them predicted right before their step
    skipped_steps: int = 0      # steps skipped (non-finite loss or gradients)

    def learned(self, samples: int, correct: int) -> None:
        """One step taken on ``samples`` new samples, ``correct`` of them predicted right before it."""
        self.step += 1
        self.samples_learned += samples
        self.correct_learned += correct

    def values(self) -> tuple[int, ...]:
        return _COUNTER_VALUES(self)

    def restore(self, values: tuple[int, ...]) -> None:
        for f, v in zip(fields(self), values, strict=True):
            setattr(self, f.name, v)


# Read every step (the transaction keeps them): one C-level getter, not a walk over the dataclass's fields.
_COUNTER_VALUES = attrgetter(*(f.name for f in fields(StepCounters)))
