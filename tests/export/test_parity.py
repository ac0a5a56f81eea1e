"""Tests of edge_cl.export.parity: the gate passes a faithful snapshot and stops a wrong one."""

from __future__ import annotations

import math

import pytest
import torch

from edge_cl import models
from edge_cl.export.onnx_export import export_onnx
from edge_cl.export.parity import check_parity

pytestmark = pytest.mark.integration


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.mlp(input_dim=12, hidden=[10], num_classes=3).eval()


def _first_linear(model: torch.nn.Module) -> torch.nn.Linear:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Linear))


def _inputs(k: int = 16) -> torch.Tensor:
    return torch.randn(k, 12, generator=torch.Generator().manual_seed(7))


def test_faithful_snapshot_passes() -> None:
    model = _model(0)
    result = check_parity(model, export_onnx(model), _inputs())
    assert result.ok and result.reason is None
    assert 0.0 <= result.max_abs_diff <= 1e-5
    assert result.samples == 16


def test_snapshot_of_other_weights_fails_with_reason() -> None:
    data = export_onnx(_model(0))
    other = _model(0)
    with torch.no_grad():
        _first_linear(other).weight.add_(0.5)
    result = check_parity(other, data, _inputs())
    assert not result.ok
    assert result.max_abs_diff > 1e-5
    assert "tolerance" in (result.reason or "")


def test_non_finite_outputs_fail() -> None:
    model = _model(0)
    with torch.no_grad():
        _first_linear(model).bias.fill_(math.nan)
    result = check_parity(model, export_onnx(model), _inputs())
    assert not result.ok and "non-finite" in (result.reason or "")


def test_garbage_bytes_fail_without_raising() -> None:
    result = check_parity(_model(0), b"not an onnx model", _inputs())
    assert not result.ok and "onnxruntime" in (result.reason or "")


def test_bad_arguments_raise() -> None:
    model = _model(0)
    data = export_onnx(model)
    with pytest.raises(ValueError, match="sample_inputs"):
        check_parity(model, data, torch.zeros(0, 12))
    with pytest.raises(ValueError, match="tolerance"):
        check_parity(model, data, _inputs(), tolerance=-1.0)
