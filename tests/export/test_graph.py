"""Tests of edge_cl.export.graph: a network's extra graph inputs (with defaults), outputs and metadata reach the
snapshot, onnxruntime runs it with and without them, and the parity gate checks each listed value."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from edge_cl.export.graph import GraphExtras, GraphInput, extras_of
from edge_cl.export.onnx_export import ExportError, export_onnx, read_metadata
from edge_cl.export.parity import check_parity
from edge_cl.runtime import make_session

pytestmark = pytest.mark.integration
DIM, CLASSES, K = 5, 3, 4


class Scaled(nn.Module):
    """A linear model whose logits are scaled by one of K factors, picked by the graph input ``pick``."""

    def __init__(self, default: int = 2, drop_input: bool = False, wrong_value: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(DIM, CLASSES)
        self.register_buffer("scales", torch.arange(1.0, K + 1.0))
        self.default, self.drop_input, self.wrong_value = default, drop_input, wrong_value
        self.input_dim = DIM

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_graph(x, torch.tensor(self.default))[0]

    def forward_graph(self, x: Tensor, pick: Tensor) -> tuple[Tensor, Tensor]:
        every = self.lin(x)[:, None, :] * self.scales[None, :, None]
        if self.drop_input:
            return every[:, 0], every
        chosen = every.index_select(1, pick.reshape(1))[:, 0]
        if self.wrong_value is not None and not torch.jit.is_tracing() and int(pick) == self.wrong_value:
            chosen = chosen * 1.5  # torch disagrees with the graph for this one value
        return chosen, every

    def graph_extras(self) -> GraphExtras:
        values = tuple(torch.tensor(i) for i in range(K))
        return GraphExtras((GraphInput("pick", torch.tensor(self.default), values),), ("every",), {"picks": "4"})


def _x(n: int = 16) -> Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(1))


def test_extra_input_defaults_to_the_networks_choice_and_can_be_fed() -> None:
    model = Scaled(default=2).eval()
    data = export_onnx(model)
    session = make_session(data)
    assert [i.name for i in session.get_inputs()] == ["input"]  # a plain inference process feeds only `input`
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities", "every"]
    x = _x()
    logits, _, every = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(logits, model(x).detach().numpy(), atol=1e-5)
    assert every.shape == (16, K, CLASSES)
    for i in range(K):
        fed = session.run(["logits"], {"input": x[:1].numpy(), "pick": np.array(i, np.int64)})[0]
        np.testing.assert_allclose(fed, model.forward_graph(x[:1], torch.tensor(i))[0].detach().numpy(), atol=1e-5)
    meta = read_metadata(data)
    assert json.loads(meta["graph_inputs"]) == {"pick": 2} and meta["picks"] == "4"


def test_parity_gate_checks_every_listed_value() -> None:
    good = Scaled()
    assert check_parity(good, export_onnx(good), _x()).ok
    bad = Scaled(wrong_value=3)
    result = check_parity(bad, export_onnx(bad), _x())
    assert not result.ok and "pick=3" in (result.reason or ""), result


def test_an_input_the_graph_does_not_use_is_an_export_error() -> None:
    with pytest.raises(ExportError, match=r"\['pick'\] are not in the exported graph"):
        export_onnx(Scaled(drop_input=True))


def test_a_network_without_extras_exports_as_before() -> None:
    model = nn.Linear(DIM, CLASSES)
    assert extras_of(model) is None
    data = export_onnx(model, input_shape=(DIM,))
    assert "graph_inputs" not in read_metadata(data)
    assert not make_session(data).get_overridable_initializers()


def test_graph_extras_without_forward_graph_is_refused_naming_both() -> None:
    class Half(nn.Linear):
        def graph_extras(self) -> GraphExtras:
            return GraphExtras()

    with pytest.raises(TypeError, match="graph_extras.*forward_graph"):
        extras_of(Half(DIM, CLASSES))


@pytest.mark.slow
def test_dynamo_exporter_keeps_the_extra_input_and_its_default() -> None:
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript (extra 'dynamo')")
    model = Scaled(default=1).eval()
    data = export_onnx(model, exporter="dynamo")
    assert check_parity(model, data, _x()).ok  # the default and every listed value
    session = make_session(data)
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [i.name for i in session.get_overridable_initializers()] == ["pick"]
