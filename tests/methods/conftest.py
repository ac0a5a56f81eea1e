from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge_cl import methods


@pytest.fixture
def plugin_module() -> Iterator[str]:
    """The name of a module that registers 'plugin-replay' when imported; unregistered after the test."""
    import sys

    sys.modules.pop("tests.plugin_methods", None)
    yield "tests.plugin_methods"
    methods.unregister("plugin-replay")
    sys.modules.pop("tests.plugin_methods", None)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The bench CLI pins torch to one thread; restore the count afterwards so other tests are unaffected."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
