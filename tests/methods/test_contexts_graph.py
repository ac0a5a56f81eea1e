"""The snapshot of method 'contexts' (edge_cl.methods.contexts_graph): every context's head and the router's choice
are in the graph; without a ``context`` input it predicts as the learner, with one as the learner would with that
context active; the parity gate checks every context; the metadata names them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner
from edge_cl.daemon.snapshots import make_job
from edge_cl.export import publish_snapshot
from edge_cl.export.onnx_export import export_onnx, read_metadata
from edge_cl.export.parity import check_parity
from edge_cl.methods.contexts import Contexts
from edge_cl.methods.contexts_graph import ContextsNetwork
from edge_cl.runtime import SnapshotRunner, make_session
from tests.methods.flipped import DIM, make, run

pytestmark = pytest.mark.integration
PLAN = [("A", 200), ("B", 200), ("C", 200)]


@pytest.fixture(scope="module")
def learner() -> OnlineLearner:
    """A contexts learner that opened a context for each of three concepts, C active."""
    torch.set_num_threads(1)
    learner = make("contexts")
    run(learner, PLAN)
    m = learner.get_method("contexts")
    assert isinstance(m, Contexts) and len(m.contexts()) == 3, m.report()
    return learner


def _x(n: int = 32) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(3))


def _with_context(learner: OnlineLearner, slot: int) -> torch.nn.Module:
    """The learner's network with the head of ``slot`` put in the model: what it predicts when the router picks it."""
    m = learner.get_method("contexts")
    net = copy.deepcopy(learner.model).eval()
    head = dict(net.named_modules())[next(n for n, mod in learner.model.named_modules() if mod is m.head)]
    with torch.no_grad():
        if slot != m.active:
            head.weight.copy_(m.heads_w[slot])
            head.bias.copy_(m.heads_b[slot])
    return net


def test_every_context_index_predicts_as_the_learner_with_that_context_active(learner):
    m = learner.get_method("contexts")
    net = learner.export_model().eval()
    data = export_onnx(net, step=learner.step)
    session = make_session(data)
    x = _x()
    held = [i for i, s in enumerate(m.serial_of) if s >= 0]
    for index, slot in enumerate(held):
        logits, proba, every = session.run(None, {"input": x.numpy(), "context": np.array(index, np.int64)})
        with torch.no_grad():
            want = _with_context(learner, slot)(x)
        np.testing.assert_allclose(logits, want.numpy(), atol=1e-5, err_msg=f"context index {index}")
        np.testing.assert_allclose(every[:, index], want.numpy(), atol=1e-5)
        np.testing.assert_allclose(proba, torch.softmax(want, 1).numpy(), atol=1e-5)
    # The contexts differ (else the loop above proves little): C's labels are A's shifted by two.
    assert not np.array_equal(every[:, 0].argmax(1), every[:, -1].argmax(1))


def test_without_a_context_input_the_snapshot_predicts_as_the_learner(learner):
    m = learner.get_method("contexts")
    net = learner.export_model().eval()
    x = _x()
    with torch.no_grad():
        assert torch.equal(net(x), learner.inference_model().eval()(x))  # bit for bit in torch
    data = export_onnx(net)
    proba = make_session(data).run(["probabilities"], {"input": x.numpy()})[0]
    np.testing.assert_allclose(proba, learner.predict_proba(x.numpy()), atol=1e-5)
    assert np.array_equal(proba.argmax(1), learner.predict(x.numpy()))
    meta = read_metadata(data)
    assert json.loads(meta["contexts"]) == m.contexts()                       # serials, in graph index order
    assert json.loads(meta["contexts"])[int(meta["context"])] == m.active_serial
    assert json.loads(meta["graph_inputs"]) == {"context": int(meta["context"])}


def test_parity_gate_checks_every_context(learner):
    net = learner.export_model().eval()
    data = export_onnx(net)
    assert check_parity(net, data, _x()).ok
    # A graph whose inactive heads differ from the learner's fails the gate, though the default context agrees.
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.head.weight[0].mul_(3.0)
    result = check_parity(other, data, _x())
    assert not result.ok and "(context=0)" in (result.reason or ""), result


def test_published_snapshot_lets_an_inference_process_pick_a_context(learner, tmp_path: Path):
    m = learner.get_method("contexts")
    job = make_job(learner)
    result = publish_snapshot(job.model, tmp_path, step=job.step, sample_inputs=job.sample_inputs)
    assert result.published, result.reason
    runner = SnapshotRunner(tmp_path)
    assert set(runner.optional_inputs) == {"context"}
    x = _x().numpy()
    np.testing.assert_array_equal(runner.predict(x), learner.predict(x))
    held = [i for i, s in enumerate(m.serial_of) if s >= 0]
    for index, slot in enumerate(held):
        with torch.no_grad():
            want = _with_context(learner, slot)(torch.from_numpy(x)).argmax(1).numpy()
        np.testing.assert_array_equal(runner.predict(x, {"context": index}), want)
    with pytest.raises(ValueError, match=r"\['season'\] are not optional inputs.*offers \['context'\]"):
        runner.predict(x, {"season": 1})


def test_exporting_leaves_the_learner_as_it_was(learner):
    before = copy.deepcopy(learner.state_dict())
    hooks = sum(len(mod._forward_hooks) for mod in learner.model.modules())
    net = learner.export_model()
    assert isinstance(net, ContextsNetwork)
    export_onnx(net)
    from tests.oracles import assert_same_state

    assert_same_state(before, learner.state_dict())
    assert sum(len(mod._forward_hooks) for mod in learner.model.modules()) == hooks
    assert not any(p is q for p in net.parameters() for q in learner.model.parameters())


def test_a_single_context_exports_with_index_zero():
    learner = make("contexts")
    run(learner, [("A", 20)])
    data = export_onnx(learner.export_model())
    meta = read_metadata(data)
    assert json.loads(meta["contexts"]) == [0] and meta["context"] == "0"


def test_under_another_predictor_the_snapshot_is_that_network():
    learner = make("contexts", predict="ncm")
    run(learner, [("A", 20)])
    net = learner.export_model()
    assert type(net) is type(learner.inference_model()) and not isinstance(net, ContextsNetwork)
