"""Running a method's own forward of the user's model (an importance estimate, a teacher's or an EMA copy's
targets) in eval mode, without changing the model's mode for good."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block, every module's own training flag put back after it.

    Importance is estimated on the function the model predicts with (``predict`` and the ONNX export run in eval
    mode), for three reasons. A per-sample gradient under train-mode BatchNorm is not one sample's: its output
    depends on the whole batch's statistics, and a batch of one has none over flat features. A train-mode forward
    would also update BatchNorm's running statistics in place, so an estimate would change the model it measures
    (and torch.func refuses that mutation outright). And Dropout would make the estimate random, drawing from the
    user's global RNG, which vmap refuses too. Models without such layers compute the same either way.
    """
    modes = [(m, m.training) for m in model.modules()]
    if not any(training for _, training in modes):
        yield
        return
    try:
        for m, _ in modes:
            m.training = False
        yield
    finally:
        for m, training in modes:
            m.training = training
