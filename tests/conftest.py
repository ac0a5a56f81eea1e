"""Shared fixtures: CUDA availability and small synthetic streams."""

from __future__ import annotations

import pytest
import torch

# The suite's models are tiny: one intra-op thread is faster than two and is not hurt by a busy machine.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
