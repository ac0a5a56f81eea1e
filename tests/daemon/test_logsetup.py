"""Tests of edge_cl.daemon.logsetup: JSON lines and the warning rate limiter."""

from __future__ import annotations

import json
import logging

import pytest

from edge_cl.daemon.logsetup import JsonFormatter, RateLimiter, configure_logging


def test_json_lines_carry_extra_fields() -> None:
    rec = logging.makeLogRecord({"name": "edge_cl.daemon", "levelname": "WARNING", "msg": "bad %s",
                                 "args": ("input",), "reason": "shape"})
    out = json.loads(JsonFormatter().format(rec))
    assert out["msg"] == "bad input" and out["level"] == "WARNING" and out["reason"] == "shape"
    assert out["ts"].endswith("+00:00")


def test_rate_limiter_counts_what_it_holds_back() -> None:
    now = [0.0]
    rl = RateLimiter(10.0, clock=lambda: now[0])
    assert rl.allow("a") == (True, 0)
    assert rl.allow("a") == (False, 0)
    assert rl.allow("b") == (True, 0)  # keys are independent
    assert rl.allow("a") == (False, 0)
    now[0] = 10.5
    assert rl.allow("a") == (True, 2)


def test_configure_logging_checks_format() -> None:
    with pytest.raises(ValueError, match="logging.format"):
        configure_logging("INFO", "xml")
    configure_logging("INFO", "json")
    logger = logging.getLogger("edge_cl")
    assert isinstance(logger.handlers[0].formatter, JsonFormatter)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.propagate = True
