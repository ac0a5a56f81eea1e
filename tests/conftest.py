"""Shared fixtures: CUDA availability, small synthetic streams, and the docs switch (EDGE_CL_REQUIRE_DOCS)."""

from __future__ import annotations

import importlib.util
import os

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docs: builds or checks the documentation site (mkdocs, the `docs` extra)")


@pytest.fixture
def mkdocs_installed() -> None:
    """Skip when MkDocs + Material (the `docs` extra) are missing; fail instead under EDGE_CL_REQUIRE_DOCS=1 (CI),
    as EDGE_CL_REQUIRE_BROKER does for the broker tests."""
    missing = [m for m in ("mkdocs", "material") if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed; pip install -e '.[docs]'"
        if os.environ.get("EDGE_CL_REQUIRE_DOCS") == "1":
            pytest.fail(f"EDGE_CL_REQUIRE_DOCS=1 but {reason}")
        pytest.skip(reason)
