"""Optional dependencies: a missing extra is one clear error naming what to install, never a bare ImportError."""

from __future__ import annotations

import sys

import pytest

from edge_cl.extras import MissingExtra, require


@pytest.fixture
def without(monkeypatch):
    """Make ``import <name>`` fail as if the package were not installed."""
    def hide(*names: str) -> None:
        for name in list(sys.modules):
            if any(name == n or name.startswith(n + ".") for n in names):
                monkeypatch.delitem(sys.modules, name)
        for n in names:
            monkeypatch.setitem(sys.modules, n, None)
    return hide


def test_require_names_the_extra(without):
    without("river")
    with pytest.raises(MissingExtra, match=r"the adapter needs the 'river' package.*pip install 'edge-cl\[river\]'"):
        require("river.base", "river", "the adapter")


def test_a_drift_trigger_without_river_names_the_extra(without):
    from edge_cl.triggers import make_trigger

    without("river")
    with pytest.raises(MissingExtra, match=r"trigger 'adwin'.*edge-cl\[river\]"):
        make_trigger("adwin")
    assert make_trigger("plateau") is not None  # the default needs nothing more


def test_the_dynamo_exporter_without_onnxscript_names_the_extra(without):
    from edge_cl import models
    from edge_cl.export.onnx_export import Exporter, export_onnx

    without("onnxscript")
    model = models.mlp(4, [8], 3)
    with pytest.raises(Exception, match=r"edge-cl\[dynamo\]"):
        export_onnx(model, exporter=Exporter.DYNAMO)
    assert export_onnx(model)  # TorchScript, the default, needs no onnxscript


def test_the_base_install_needs_neither(without):
    """The learner, the daemon's config and the default trigger import and run with river and onnxscript absent."""
    import numpy as np

    without("river", "onnxscript")
    from edge_cl import OnlineLearner, models

    learner = OnlineLearner(models.mlp(4, [8], 3), budget_bytes=50_000)
    learner.learn(np.random.rand(6, 4).astype(np.float32), np.arange(6) % 3)
    assert learner.step == 1
