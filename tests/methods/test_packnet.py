"""Method 'packnet' (issue #23): frozen weights stay bit-identical, both of two conflicting regimes are kept and the
router re-activates the old mask, every byte is counted, state and ONNX export round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner, models
from edge_cl.methods.packnet import PackNet, packnet_bytes
from tests.methods import flipped
from tests.methods.flipped import (
    ABA,
    BATCH,
    CLASSES,
    DIM,
    assert_resumes_after_two_contexts,
    concepts,
    run,
    visit,
)

QUIET = {"packnet_detector_params": {"clock": 1, "delta": 1e-30}}  # no detection: the tests switch by hand


def make(method: str = "packnet", seed: int = 0, **kw: object) -> OnlineLearner:
    return flipped.make(method, seed, **kw)


def frozen_of(learner: OnlineLearner, slot: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(positions, values) of the pruned weights owned by ``slot``, per pruned layer, as the model holds them."""
    m = learner.get_method("packnet")
    assert isinstance(m, PackNet)
    out = []
    for (_, p), o in zip(m.pruned, m._views(m.owner, m.pruned), strict=True):
        where = o == slot + 1
        out.append((where.clone(), p.detach()[where].clone()))
    return out


def test_frozen_weights_are_bit_identical_after_a_switch_and_further_learning():
    for options in ({}, {"momentum": 0.9}, {"optimizer": "adam", "lr": 0.01}):
        learner = make(**options)
        m = learner.get_method("packnet")
        run(learner, [("A", 250)])
        m._open_new()  # a confirmed switch: A's kept weights are frozen as slot 0's
        frozen = frozen_of(learner, 0)
        assert sum(int(w.sum()) for w, _ in frozen) > 0, options
        for _, x, y in concepts([("B", 250), ("C", 150)], seed=1):  # more switches may come, the model learns on
            learner.learn(x, y)
            # After every step, whichever context is active sees A's weights (every context is younger than A, or A
            # itself), exactly as they were frozen ...
            for (where, values), (now_where, now) in zip(frozen, frozen_of(learner, 0), strict=True):
                assert torch.equal(where, now_where), options
                assert torch.equal(values, now), options
        assert m.counts["frozen"] >= 1
        # ... and the frozen copy never moved either.
        for (where, values), k in zip(frozen, m._views(m.kept, m.pruned), strict=True):
            assert torch.equal(k[where], values)


def test_flipped_labels_keep_both_regimes_and_the_router_returns_to_the_old_mask():
    torch.set_num_threads(1)
    pn, sgd = make(), make("sgd")
    m = pn.get_method("packnet")
    active = []
    acc_pn = []
    for name, x, y in concepts(ABA):
        acc_pn.append((name, pn.learn(x, y).new_correct / BATCH))
        active.append((name, m.active_serial))
    acc_sgd = run(sgd, ABA)
    assert m.counts["frozen"] >= 1 and m.counts["opened"] == 2, m.report()
    # Both regimes learned: A at the end of its visit, B at the end of its own about as well as fine-tuning.
    assert visit(acc_pn, 200, 50) >= 0.85, visit(acc_pn, 200, 50)
    assert visit(acc_pn, 450, 50) >= visit(acc_sgd, 450, 50) - 0.05, (visit(acc_pn, 450, 50), visit(acc_sgd, 450, 50))
    # A returns: the router re-activates A's mask (serial 0) within 5 steps (50 samples) and keeps it.
    assert active[249] == ("A", 0) and active[499][1] != 0
    first_back = next(i for i, (_, serial) in enumerate(active[500:]) if serial == 0)
    assert first_back <= 5, f"the router took {first_back} steps to re-activate A's mask"
    assert all(serial == 0 for _, serial in active[500 + first_back:])
    # A's return is scored with A's frozen mask: far above fine-tuning, which has relearned it from B.
    back_pn, back_sgd = visit(acc_pn, 500, 20), visit(acc_sgd, 500, 20)
    assert back_pn >= back_sgd + 0.15 and back_pn >= 0.75, (back_pn, back_sgd)


def test_every_byte_is_counted():
    torch.manual_seed(0)
    model = models.mlp(DIM, [32], CLASSES)
    learner = OnlineLearner(model, budget_bytes=200_000, method="packnet", packnet_contexts=3, device="cpu",
                            trigger=None, standardize=False)
    part = learner.memory_report()["parts"]["packnet"]
    weights = DIM * 32 + 32 * CLASSES
    biases = 32 + CLASSES
    # owner byte + float32 kept + float32 last good copy (with its biases); per slot its biases, window and serial
    assert part == weights * (1 + 4 + 4) + biases * 4 + 3 * (biases * 4 + 4 + 8)
    assert part == packnet_bytes(learner.model, 3)
    plain = OnlineLearner(models.mlp(DIM, [32], CLASSES), budget_bytes=200_000, method="packnet", packnet_contexts=3,
                          packnet_keep_good=False, device="cpu", trigger=None, standardize=False)
    assert plain.memory_report()["parts"]["packnet"] == weights * 5 + 3 * (biases * 4 + 4 + 8) \
        == packnet_bytes(plain.model, 3, keep_good=False)
    assert learner.memory_report()["buffer_field_bytes_per_sample"]["packnet_context"] == 2


def test_full_slots_merge_the_least_used_into_the_next_younger_and_no_other_context_changes():
    learner = make(packnet_contexts=3, **QUIET)
    m = learner.get_method("packnet")
    run(learner, [("A", 150)])
    m._open_new()
    run(learner, [("B", 20)], seed=1)    # B: the least used
    m._open_new()
    run(learner, [("C", 100)], seed=2)
    assert m.contexts() == [0, 1, 2] and m.active == m.open == 2
    x = torch.randn(64, DIM, generator=torch.Generator().manual_seed(4))
    a_before, c_before = m._weights_of(0), learner.predict(x.numpy())
    m._open_new()                        # a fourth context: C frozen, B (least used, not active) evicted
    assert m.counts["evicted"] == m.counts["merged"] == 1 and m.contexts() == [0, 3, 2], m.report()
    assert not bool((m.owner == 2).any()), "B's weights are C's now"
    for w, v in zip(a_before, m._weights_of(0), strict=True):
        assert torch.equal(w, v)         # A sees exactly what it saw
    m._switch(2)                         # C predicts as it did when frozen (its merged weights included)
    frozen_c = learner.predict(x.numpy())
    assert (frozen_c == c_before).mean() >= 0.9  # pruning to packnet_keep of C's own weights moves a few


def test_full_slots_free_the_youngest_least_used_context_back_to_the_pool():
    learner = make(packnet_contexts=2, **QUIET)
    m = learner.get_method("packnet")
    run(learner, [("A", 150)])
    m._open_new()
    run(learner, [("B", 20)], seed=1)
    m._switch(0)                         # back to A: B frozen, the youngest, and used less
    free_before = m.free_fraction()
    m._open_new()
    assert m.counts["evicted"] == 1 and m.counts["merged"] == 0 and m.contexts() == [0, 2], m.report()
    assert m.free_fraction() > free_before and not bool((m.owner == 2).any())
    assert m.active == m.open == 1


def test_save_and_load_resumes_exactly(tmp_path):
    assert_resumes_after_two_contexts("packnet", tmp_path)


@pytest.mark.parametrize("method", ["er+packnet", "der++ + packnet"])
def test_combines_with_replay(method):
    learner = make(method)
    run(learner, ABA[:2])
    m = learner.get_method("packnet")
    assert m.counts["frozen"] >= 1 and len(learner.buffer) > 0


@pytest.mark.integration
def test_onnx_snapshot_predicts_with_the_active_mask():
    from edge_cl.export.onnx_export import export_onnx
    from edge_cl.export.parity import check_parity

    learner = make()
    run(learner, ABA)  # ends on A's re-activated, frozen mask: younger weights hidden
    m = learner.get_method("packnet")
    assert m.active_serial == 0 and m.open == -1
    x = torch.randn(32, DIM, generator=torch.Generator().manual_seed(3))
    net = learner.inference_model().eval()
    result = check_parity(net, export_onnx(net), x)
    assert result.ok, result.reason
    # The exported network is A's mask: exactly A's frozen weights, zero elsewhere.
    for (_, p), w in zip(m.pruned, m._weights_of(m.active), strict=True):
        assert torch.equal(p.detach(), w)
    assert np.array_equal(net(x).argmax(1).numpy(), learner.predict(x.numpy()))


def test_an_unknown_detector_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="packnet_detector='frobnicate'.*unknown"):
        make(packnet_detector="frobnicate")


def test_conv_weights_are_pruned_and_frozen_too():
    from tests.model_zoo import build

    net = build("conv_bn", DIM, CLASSES)
    options = {"replay_batch": 10, "trigger": None, "lr": 0.1, "momentum": 0.9, **QUIET}
    budget = OnlineLearner.required_bytes(net, buffer_samples=100, method="packnet", **options)
    learner = OnlineLearner(net, budget_bytes=budget, method="packnet", device="cpu", **options)
    m = learner.get_method("packnet")
    # The learner wraps the model (its input standardiser) as `model`: Conv1d and Linear weights are pruned, the
    # biases and BatchNorm affine parameters are per context.
    assert [n for n, _ in m.pruned] == ["model.conv.weight", "model.fc.weight", "model.head.weight"]
    assert {n for n, _ in m.others} >= {"model.conv.bias", "model.bn1.weight", "model.bn2.bias", "model.head.bias"}
    run(learner, [("A", 100)])
    m._open_new()
    frozen = frozen_of(learner, 0)
    conv = frozen[0]
    assert 0 < int(conv[0].sum()) < conv[0].numel()  # a part of the conv kernel is A's, the rest freed
    for _, x, y in concepts([("B", 60)], seed=1):
        learner.learn(x, y)
        for (where, values), (_, now) in zip(frozen, frozen_of(learner, 0), strict=True):
            assert torch.equal(values, now)


@pytest.mark.integration
def test_onnx_snapshot_holds_every_context_and_the_router_choice():
    """Two contexts, A re-activated: without a ``context`` input the snapshot predicts as the learner; with each index,
    as the learner does once the router has put that context's mask in (the method's own _load); the gate checks
    every index; the metadata names the contexts."""
    import json

    from edge_cl.export.onnx_export import export_onnx, read_metadata
    from edge_cl.export.parity import check_parity
    from edge_cl.runtime import make_session

    learner = make()
    run(learner, ABA)
    m = learner.get_method("packnet")
    held = [s for s, serial in enumerate(m.serial_of) if serial >= 0]
    assert len(held) == 2 and m.active == held[0] and m.open == -1, m.report()
    x = torch.randn(32, DIM, generator=torch.Generator().manual_seed(3))
    net = learner.export_model().eval()
    with torch.no_grad():
        assert torch.equal(net(x), learner.inference_model().eval()(x))
    data = export_onnx(net, step=learner.step)
    assert check_parity(net, data, x).ok
    meta = read_metadata(data)
    assert json.loads(meta["contexts"]) == m.contexts() and meta["context"] == "0"
    session = make_session(data)
    outs = [session.run(None, {"input": x.numpy(), "context": np.array(i, np.int64)}) for i in range(len(held))]
    active = m.active
    try:
        for index, slot in enumerate(held):
            m._load(slot)
            with torch.no_grad():
                want = learner.inference_model().eval()(x)
            np.testing.assert_allclose(outs[index][0], want.numpy(), atol=1e-5, err_msg=f"context {index}")
            np.testing.assert_allclose(outs[index][2][:, index], want.numpy(), atol=1e-5)
    finally:
        m._load(active)
    assert not np.array_equal(outs[0][0].argmax(1), outs[1][0].argmax(1))  # A's and B's labels disagree
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], outs[0][0], atol=0)
