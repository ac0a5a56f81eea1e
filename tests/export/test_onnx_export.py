"""Tests of edge_cl.export.onnx_export: graph interface, metadata, no side effects, parity per model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edge_cl import models
from edge_cl.export.onnx_export import Exporter, ExportError, export_onnx, read_metadata


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return models.mlp(input_dim=20, hidden=[16, 16], num_classes=4)


def _cnn1d() -> nn.Module:
    torch.manual_seed(1)
    return models.cnn1d(channels=3, length=24, num_classes=5, conv=[8, 8], hidden=16)


def test_graph_has_named_io_with_dynamic_batch_axis() -> None:
    proto = onnx.load_from_string(export_onnx(_mlp(), step=3))
    inputs = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in proto.graph.input]
    outputs = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in proto.graph.output]
    assert inputs == [("input", ["batch", 20])]
    assert outputs == [("logits", ["batch", 4]), ("probabilities", ["batch", 4])]
    onnx.checker.check_model(proto)


def test_metadata_names_step_shape_classes_accuracy() -> None:
    meta = read_metadata(export_onnx(_cnn1d(), step=42, prequential_accuracy=0.875))
    assert meta["step"] == "42"
    assert json.loads(meta["input_shape"]) == [3, 24]
    assert meta["input_dim"] == "72"
    assert meta["num_classes"] == "5"
    assert float(meta["prequential_accuracy"]) == 0.875
    assert meta["version"] and meta["created"].endswith("+00:00")
    assert json.loads(meta["spec"])["type"] == "cnn1d"
    assert read_metadata(export_onnx(_mlp(), step=0))["prequential_accuracy"] == ""


def test_export_leaves_the_model_untouched() -> None:
    model = _mlp().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, step=1)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_plain_module_needs_input_shape() -> None:
    plain = nn.Sequential(nn.Linear(6, 3))
    with pytest.raises(ValueError, match="input_shape"):
        export_onnx(plain)
    assert read_metadata(export_onnx(plain, input_shape=(6,)))["input_dim"] == "6"


@pytest.mark.parametrize("step", [-1, 1.5, True])
def test_bad_step_is_refused(step: object) -> None:
    with pytest.raises(ValueError, match="step"):
        export_onnx(_mlp(), step=step)  # type: ignore[arg-type]


def test_model_that_cannot_run_raises_export_error() -> None:
    with pytest.raises(ExportError, match="forward"):
        export_onnx(nn.Linear(5, 2), input_shape=(7,))


@pytest.mark.integration
@pytest.mark.parametrize("make", [_mlp, _cnn1d], ids=["mlp", "cnn1d"])
@pytest.mark.parametrize("batch", [1, 64])
def test_onnxruntime_matches_torch(make, batch: int) -> None:
    from edge_cl.runtime import make_session

    model = make().eval()
    session = make_session(export_onnx(model, step=0))
    x = torch.randn(batch, model.input_dim, generator=torch.Generator().manual_seed(batch))
    logits, proba = session.run(["logits", "probabilities"], {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert logits.shape == proba.shape == (batch, model.num_classes)
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-5, rtol=0)
    assert np.abs(proba - torch.softmax(expected, dim=-1).numpy()).max() <= 1e-5


@pytest.mark.integration
@pytest.mark.slow
def test_dynamo_exporter_also_gives_parity() -> None:
    from edge_cl.runtime import make_session

    model = _mlp().eval()
    data = export_onnx(model, step=0, exporter=Exporter.DYNAMO)
    assert read_metadata(data)["exporter"] == "dynamo"
    x = torch.randn(3, 20, generator=torch.Generator().manual_seed(0))
    proba = make_session(data).run(["probabilities"], {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(proba - torch.softmax(model(x), -1).numpy()).max() <= 1e-5
