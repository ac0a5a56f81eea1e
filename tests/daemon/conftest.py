"""Fixtures for the daemon tests: a real Mosquitto broker (skipped, or failed under EDGE_CL_REQUIRE_BROKER=1,
when the binary is missing)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.broker import Mosquitto, find_mosquitto


@pytest.fixture
def mosquitto_bin() -> str:
    found = find_mosquitto()
    if found is None:
        reason = "mosquitto is not installed (not on PATH nor /usr/sbin/mosquitto); apt-get install mosquitto"
        if os.environ.get("EDGE_CL_REQUIRE_BROKER") == "1":
            pytest.fail(f"EDGE_CL_REQUIRE_BROKER=1 but {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture
def broker(mosquitto_bin: str, tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(mosquitto_bin, tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def edge_cl_logs_reach_caplog() -> Iterator[None]:
    """`edge-cl run` (configure_logging) stops the edge_cl logger propagating; caplog needs it to."""
    import logging

    logger = logging.getLogger("edge_cl")
    was = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = was


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as `edge-cl run` sets it; the count is restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
