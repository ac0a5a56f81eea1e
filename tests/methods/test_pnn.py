"""Method 'pnn' (issue #23): task-free progressive columns. A change opens a column and freezes the old one (bit
for bit, whatever is learned after), a returning concept re-activates its column, the columns live inside the byte
budget (the newest one goes on learning when all slots are used), state, rollback and the ONNX snapshot round trip."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from edge_cl import OnlineLearner, methods, models
from edge_cl.methods import Method
from edge_cl.methods.pnn import PNN, Columns, column_bytes, columns_that_fit
from edge_cl.transaction import MethodError
from tests.methods.flipped import BATCH, CLASSES, DIM, concepts, make, run, visit
from tests.oracles import assert_same_state

ABAB = [("A", 250), ("B", 250), ("A", 60), ("B", 60)]
ROUTER_STEPS = 2  # the router re-activates a returning concept's column within this many steps (20 samples)


def pnn_of(learner: OnlineLearner) -> PNN:
    m = learner.get_method("pnn")
    assert isinstance(m, PNN)
    return m


def column_logits(m: PNN, c: int, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m.columns.columns_logits(x, c, [c])[0]


def test_old_columns_are_bit_identical_after_a_switch_and_after_further_learning():
    learner = make("pnn")
    m = pnn_of(learner)
    data = list(concepts(ABAB))
    probe = torch.randn(64, DIM, generator=torch.Generator().manual_seed(5))
    step = 0
    while m.newest == 0:
        learner.learn(*data[step][1:])
        step += 1
    assert data[step - 1][0] == "B" and m.counts["opened"] == 2, m.report()
    frozen = [t[0].clone() for t in m.columns.store]
    before = column_logits(m, 0, probe)
    for _, x, y in data[step:]:
        learner.learn(x, y)
    assert m.counts["routed"] >= 2, m.report()  # A's column predicted again, then B's: both were in use
    assert all(torch.equal(a, t[0]) for a, t in zip(frozen, m.columns.store, strict=True))
    assert torch.equal(column_logits(m, 0, probe), before)


def test_flipped_labels_keep_both_regimes_and_a_return_starts_where_its_visit_ended():
    torch.set_num_threads(1)
    acc = {k: run(make(k), ABAB) for k in ("pnn", "sgd")}
    # B, the contradicting regime, is learned about as well as plain fine-tuning learns it (its last 50 steps) ...
    assert visit(acc["pnn"], 450, 50) >= visit(acc["sgd"], 450, 50) - 0.03
    # ... and each return, once the router has seen its first batch (the first 10 samples go to the column that was
    # active), scores within 5 points over its next 190 samples of what that regime scored at the end of its visit.
    assert visit(acc["pnn"], 501, 19) >= visit(acc["pnn"], 230, 20) - 0.05
    assert visit(acc["pnn"], 561, 19) >= visit(acc["pnn"], 480, 20) - 0.05
    assert visit(acc["pnn"], 500, 20) >= visit(acc["sgd"], 500, 20) + 0.3  # fine-tuning re-learns A from B's labels


def test_the_router_returns_to_the_old_column_within_a_stated_number_of_samples():
    learner = make("pnn")
    m = pnn_of(learner)
    active = []
    for name, x, y in concepts(ABAB):
        learner.learn(x, y)
        active.append((name, m.active))
    assert active[249] == ("A", 0) and active[499] == ("B", 1)
    back_a = next(i for i, (_, c) in enumerate(active[500:]) if c == 0)
    back_b = next(i for i, (_, c) in enumerate(active[560:]) if c == 1)
    assert back_a < ROUTER_STEPS and back_b < ROUTER_STEPS, (back_a, back_b)
    assert all(c == 0 for _, c in active[500 + back_a:560]) and all(c == 1 for _, c in active[560 + back_b:])
    assert m.counts["opened"] == 2 and m.newest == 1, m.report()  # a returning concept opens no column


def test_buffered_samples_carry_their_column():
    learner = make("pnn")
    run(learner, ABAB[:2])
    stored = learner.buffer.values["column"][:len(learner.buffer)]
    assert stored.dtype == torch.int16 and set(stored.tolist()) == {0, 1}
    assert learner.memory_report()["buffer_field_bytes_per_sample"]["column"] == 2


def test_every_byte_of_every_column_is_counted_and_the_most_that_fit_follow_from_the_budget():
    torch.manual_seed(0)
    model = models.mlp(DIM, [32], CLASSES)
    opts = {"replay_batch": 10, "trigger": None}
    budget = OnlineLearner.required_bytes(model, buffer_samples=10, method="pnn", max_columns=5, **opts) + 3
    assert columns_that_fit(model, budget, **opts) == 5
    learner = OnlineLearner(model, budget_bytes=budget, method="pnn", max_columns=5, device="cpu", **opts)
    report = learner.memory_report()
    # The frozen store under the method's name (5 slots, laterals from 4 sources each) and its loss window ...
    assert report["parts"]["pnn"] == column_bytes(model, 5) + 5 * 4
    # ... and the live column's laterals among the model's parameters, with their gradients.
    lateral = 4 * 32 * CLASSES * 4
    bare = 4 * sum(p.numel() for p in models.mlp(DIM, [32], CLASSES).parameters())
    assert report["parts"]["parameters"] == report["parts"]["gradients"] == bare + lateral
    with pytest.raises(ValueError, match="budget_bytes=.* is too small"):
        OnlineLearner(models.mlp(DIM, [32], CLASSES), budget_bytes=budget, method="pnn", max_columns=6,
                      device="cpu", **opts)


def test_when_every_slot_holds_a_column_the_newest_learns_the_next_concept_and_the_old_stay():
    learner = make("pnn", max_columns=2)
    m = pnn_of(learner)
    acc = run(learner, [("A", 250), ("B", 200), ("C", 250)])
    assert m.counts["opened"] == 2 and m.counts["reused"] == 1 and m.newest == m.active == 1, m.report()
    assert visit(acc, 650, 50) >= 0.85  # C is learned in B's slot (B is lost there) ...
    assert m.serial_of[1] not in (0, 1)  # ... under a new serial: B's buffered samples are not replayed into it
    # A's column still predicts A as it did when it was frozen.
    later = list(concepts([("A", 250), ("B", 200), ("C", 250), ("A", 20)]))[-20:]  # unseen samples of A's rule
    x_a, y_a = zip(*[(x, y) for _, x, y in later], strict=True)
    x = torch.as_tensor(np.concatenate(x_a))
    logits = column_logits(m, 0, learner.model.standardizer(x))
    assert float((logits.argmax(1).numpy() == np.concatenate(y_a)).mean()) >= 0.85


def test_save_and_load_with_columns_resumes_exactly(tmp_path):
    data = list(concepts(ABAB))
    a = make("pnn")
    for _, x, y in data[:300]:
        a.learn(x, y)
    assert pnn_of(a).counts["opened"] == 2
    a.save(tmp_path / "state.pt")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        b = OnlineLearner.load(tmp_path / "state.pt", model=models.mlp(DIM, [32], CLASSES), device="cpu")
    assert pnn_of(b).report() == pnn_of(a).report()
    for _, x, y in data[300:]:
        a.learn(x, y)
        b.learn(x, y)
    assert_same_state(a.state_dict(), b.state_dict())
    assert pnn_of(b).active == pnn_of(a).active == 1


class _FailAfter(Method):
    """Raises in after_update (after pnn's) on the step its class attribute names."""

    name = "fail-after-test"
    at = -1

    def after_update(self, step) -> None:
        if step.index == type(self).at:
            raise RuntimeError("planned failure")


@pytest.mark.parametrize("when", ["freezing", "keeping-a-good-copy"])
def test_a_failing_step_is_put_back_exactly(when):
    """A step that froze a column, or refreshed the newest column's good copy (both write the store), then failed in
    a later method's hook leaves the learner as it was before the step."""
    methods.register(_FailAfter)
    try:
        data = list(concepts(ABAB))
        probe = make("pnn")  # on this stream: the step that freezes the first column, and steps that refresh its copy
        refreshed, opened = [], -1
        for i, (_, x, y) in enumerate(data):
            before = pnn_of(probe).columns.store[0][0].clone()
            probe.learn(x, y)
            if pnn_of(probe).newest == 1:
                opened = i
                break
            if not torch.equal(before, pnn_of(probe).columns.store[0][0]):
                refreshed.append(i)
        if when == "keeping-a-good-copy":
            opened = next(i for i in refreshed if i >= 150)  # deep in A's visit
        learner = make("pnn+fail-after-test")
        for _, x, y in data[:opened]:
            learner.learn(x, y)
        before = copy.deepcopy(learner.state_dict())
        _FailAfter.at = opened
        with pytest.raises(MethodError, match="fail-after-test"):
            learner.learn(*data[opened][1:])
        assert_same_state(before, learner.state_dict())
        _FailAfter.at = -1
        slot = [t[0].clone() for t in pnn_of(learner).columns.store]
        learner.learn(*data[opened][1:])
        if when == "freezing":
            assert pnn_of(learner).newest == 1  # the same step, run again, freezes the column
        else:
            assert pnn_of(learner).kept and not all(torch.equal(a, t[0]) for a, t in
                                                    zip(slot, pnn_of(learner).columns.store, strict=True))
    finally:
        methods.unregister(_FailAfter.name)


@pytest.mark.parametrize("method", ["er+pnn", "der++ + pnn"])
def test_replay_combinations_run_and_keep_the_old_column(method):
    learner = make(method)
    m = pnn_of(learner)
    run(learner, ABAB[:1])
    frozen_at = None
    for _, x, y in concepts(ABAB[:2]):
        if m.newest == 1 and frozen_at is None:
            frozen_at = [t[0].clone() for t in m.columns.store]
        learner.learn(x, y)
    assert m.newest == 1 and len(learner.buffer) > 0, m.report()
    assert frozen_at is not None and all(torch.equal(a, t[0]) for a, t in zip(frozen_at, m.columns.store, strict=True))


@pytest.mark.integration
@pytest.mark.parametrize("plan", [ABAB[:2], ABAB[:3]], ids=["newest-active", "frozen-active"])
def test_onnx_snapshot_predicts_with_the_active_column(plan):
    from edge_cl.export.onnx_export import export_onnx
    from edge_cl.export.parity import check_parity

    learner = make("pnn")
    run(learner, plan)
    m = pnn_of(learner)
    assert m.newest == 1 and m.active == (1 if len(plan) == 2 else 0), m.report()
    x = torch.randn(32, DIM, generator=torch.Generator().manual_seed(3))
    net = learner.inference_model().eval()
    result = check_parity(net, export_onnx(net), x)
    assert result.ok, result.reason
    assert np.array_equal(net(x).argmax(1).numpy(), learner.predict(x.numpy()))
    with torch.no_grad():
        expected = column_logits(m, m.active, learner.model.standardizer(x))
    assert torch.equal(net(x), expected)


def test_models_other_than_a_linear_chain_are_refused_with_what_to_use():
    conv = models.cnn1d(2, 6, CLASSES)
    with pytest.raises(ValueError, match=r"shape \(2, 6\), not flat vectors.*method .contexts."):
        OnlineLearner(conv, budget_bytes=1_000_000, method="pnn", device="cpu")
    odd = nn.Sequential(nn.Linear(DIM, CLASSES), nn.Tanh())
    odd.input_dim = DIM  # type: ignore[assignment]
    with pytest.raises(ValueError, match="ends with Tanh"):
        OnlineLearner(odd, budget_bytes=1_000_000, method="pnn", device="cpu")


def test_sizing_a_budget_leaves_the_model_as_it_was():
    model = models.mlp(DIM, [32], CLASSES)
    before = copy.deepcopy(model.state_dict())
    OnlineLearner.required_bytes(model, buffer_samples=10, method="pnn")
    assert not isinstance(model, Columns) and not any(isinstance(m, Columns) for m in model.modules())
    assert_same_state(before, model.state_dict())


def test_an_unknown_detector_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="column_detector='frobnicate'.*unknown"):
        make("pnn", column_detector="frobnicate")


def test_random_column_init_is_reproducible_and_learns():
    a, b = make("pnn", column_init="random"), make("pnn", column_init="random")
    acc = run(a, ABAB[:2])
    run(b, ABAB[:2])
    assert_same_state(a.state_dict(), b.state_dict())
    assert visit(acc, 450, 50) >= 0.8 and BATCH == 10


def test_head_laterals_cost_only_the_output_layer_and_keep_both_regimes():
    def learner_with(laterals: str) -> OnlineLearner:
        torch.manual_seed(0)
        model = models.mlp(DIM, [32, 16], CLASSES)
        opts = {"replay_batch": 10, "trigger": None, "lr": 0.1, "method": "pnn", "column_laterals": laterals}
        budget = OnlineLearner.required_bytes(model, buffer_samples=300, **opts)
        return OnlineLearner(model, budget_bytes=budget, seed=0, device="cpu", **opts)

    head, full = learner_with("head"), learner_with("all")
    model = head.model.model.model
    assert head.memory_report()["parts"]["pnn"] == column_bytes(model, 4, "head") + 4 * 4
    assert full.memory_report()["parts"]["pnn"] == column_bytes(model, 4, "all") + 4 * 4
    assert column_bytes(model, 4, "head") < column_bytes(model, 4, "all")
    assert [p.shape for p in pnn_of(head).columns.lateral] == [torch.Size([CLASSES, 3 * 16])]
    assert [p.shape for p in pnn_of(full).columns.lateral] == [torch.Size([16, 3 * 32]), torch.Size([CLASSES, 3 * 16])]
    acc = run(head, ABAB)
    assert pnn_of(head).counts["opened"] == 2, pnn_of(head).report()
    assert visit(acc, 501, 19) >= visit(acc, 230, 20) - 0.05 and visit(acc, 450, 50) >= 0.9


@pytest.mark.parametrize("laterals", ["all", "head"])
def test_a_column_computes_the_progressive_network_formula(laterals):
    torch.manual_seed(0)
    net = Columns(models.mlp(DIM, [8, 5], CLASSES), k=3, laterals=laterals, scale=0.5)
    with torch.no_grad():
        for t in [*net.store, *net.lateral]:
            t.normal_()
    net.newest = net.active = 2
    x = torch.randn(4, DIM)

    hs: list[list[torch.Tensor]] = []
    for c in range(3):
        if c == 2:
            w = [lay.weight for lay in net.layers]
            b = [lay.bias for lay in net.layers]
            u = dict(zip([i for i in range(3) if net.reads[i]], net.lateral, strict=True))
        else:
            per = [t[c] for t in net.store]
            w, b, u, pos = [], [], {}, 0
            for i in range(3):
                w.append(per[pos])
                b.append(per[pos + 1])
                pos += 2
                if net.reads[i]:
                    u[i] = per[pos]
                    pos += 1
        h, outs = x, []
        for i in range(3):
            z = h @ w[i].T + b[i]
            if i in u and c > 0:
                z = z + (0.5 * torch.cat([hs[j][i] for j in range(c)], 1)) @ u[i][:, :c * net.layers[i].in_features].T
            outs.append(h)
            h = torch.relu(z) if i < 2 else z
        hs.append(outs)
        if c == 2:
            expected = h
    assert net.reads == ([False, True, True] if laterals == "all" else [False, False, True])
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_onnx_snapshot_holds_every_column_and_the_router_choice():
    """The snapshot of a learner with two columns, the old one re-activated: without a ``context`` input it predicts as
    the learner; with each index, as the learner with that column active; the gate checks every index."""
    from edge_cl.export.onnx_export import export_onnx, read_metadata
    from edge_cl.export.parity import check_parity
    from edge_cl.runtime import make_session

    learner = make("pnn")
    run(learner, ABAB[:3])
    m = pnn_of(learner)
    assert m.newest == 1 and m.active == 0, m.report()
    x = torch.randn(32, DIM, generator=torch.Generator().manual_seed(3))
    net = learner.export_model().eval()
    with torch.no_grad():
        assert torch.equal(net(x), learner.inference_model().eval()(x))
    data = export_onnx(net, step=learner.step)
    assert check_parity(net, data, x).ok
    meta = read_metadata(data)
    assert json.loads(meta["contexts"]) == m.serial_of[:2] and meta["context"] == "0"
    assert json.loads(meta["graph_inputs"]) == {"context": 0}
    session = make_session(data)
    plain = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(plain, learner.inference_model().eval()(x).numpy(), atol=1e-5)
        std = learner.model.standardizer(x)
    for index in range(2):
        logits, _, every = session.run(None, {"input": x.numpy(), "context": np.array(index, np.int64)})
        with torch.no_grad():
            want = column_logits(m, index, std)
        np.testing.assert_allclose(logits, want.numpy(), atol=1e-5, err_msg=f"column {index}")
        np.testing.assert_allclose(every[:, index], want.numpy(), atol=1e-5)
    # The columns disagree (B's labels contradict A's), so picking one is not a no-op.
    assert not np.array_equal(every[:, 0].argmax(1), every[:, 1].argmax(1))
    # Exporting left the learner as it was: it still predicts with column 0, and no route is set.
    assert m.active == 0 and m.columns.route is None and m.columns.every is None
