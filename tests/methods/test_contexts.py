"""Method 'contexts' (issue #23): a context opens at a confirmed change, a returning concept re-activates its old
context, contexts live inside the byte budget (least used evicted when full), state and ONNX export round trip."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch import nn

from edge_cl import OnlineLearner, models
from edge_cl.methods.contexts import Contexts, context_bytes, contexts_that_fit
from tests.methods.flipped import (
    ABA,
    CLASSES,
    DIM,
    RELABEL,
    assert_resumes_after_two_contexts,
    concepts,
    make,
    run,
    visit,
)
from tests.oracles import assert_same_state, owned_bytes


def test_flipped_labels_open_a_context_and_learn_both_and_recover_the_first_faster():
    torch.set_num_threads(1)
    ctx, sgd, er = make("contexts"), make("sgd"), make("er")
    acc = {"contexts": run(ctx, ABA), "sgd": run(sgd, ABA), "er": run(er, ABA)}
    m = ctx.get_method("contexts")
    assert isinstance(m, Contexts)
    assert m.counts["detections"] >= 1 and m.counts["opened"] == 2, m.report()
    # B (the end of its visit) is learned about as well as plain fine-tuning learns it ...
    end_b = {k: visit(a, 450, 50) for k, a in acc.items()}
    assert end_b["contexts"] >= end_b["sgd"] - 0.03, end_b
    # ... and A, on return, is recovered faster than without contexts: its first 20 steps (200 samples).
    back = {k: visit(a, 500, 20) for k, a in acc.items()}
    assert back["contexts"] >= max(back["sgd"], back["er"]) + 0.15, back
    # Within 15 points of what A scored when it left (the router needs a step or two; the trunk moved under A's head).
    assert back["contexts"] >= visit(acc["contexts"], 200, 50) - 0.15, back


def test_a_returning_concept_reuses_its_context_within_a_few_steps():
    learner = make("contexts")
    m = learner.get_method("contexts")
    active = []
    for name, x, y in concepts(ABA):
        learner.learn(x, y)
        active.append((name, m.active_serial))
    assert active[249] == ("A", 0) and active[499][1] != 0  # B got a context of its own
    first_back = next(i for i, (name, serial) in enumerate(active[500:]) if serial == 0)
    assert first_back <= 5, f"the router took {first_back} steps to re-activate A's context"
    assert m.contexts() == [0, active[499][1]] and m.counts["opened"] == 2, m.report()
    assert all(serial == 0 for _, serial in active[500 + first_back:])


def test_buffered_samples_carry_their_context():
    learner = make("contexts")
    run(learner, ABA[:2])
    stored = learner.buffer.values["context"][:len(learner.buffer)]
    assert stored.dtype == torch.int16 and set(stored.tolist()) == set(learner.get_method("contexts").contexts())
    assert learner.memory_report()["buffer_field_bytes_per_sample"]["context"] == 2


def test_contexts_are_counted_in_the_budget_and_the_most_that_fit_follow_from_it():
    torch.manual_seed(0)
    model = models.mlp(DIM, [32], CLASSES)
    opts = {"replay_batch": 10, "trigger": None}
    budget = OnlineLearner.required_bytes(model, buffer_samples=10, method="contexts", max_contexts=5, **opts) + 3
    assert contexts_that_fit(model, budget, **opts) == 5
    learner = OnlineLearner(model, budget_bytes=budget, method="contexts", max_contexts=5, device="cpu", **opts)
    part = learner.memory_report()["parts"]["contexts"]
    assert part == 5 * context_bytes(CLASSES, 32, window=1)
    with pytest.raises(ValueError, match="budget_bytes=.* is too small"):
        OnlineLearner(models.mlp(DIM, [32], CLASSES), budget_bytes=budget, method="contexts", max_contexts=6,
                      device="cpu", **opts)


def test_full_slots_evict_the_least_used_context():
    learner = make("contexts", max_contexts=3)
    m = learner.get_method("contexts")
    run(learner, [("A", 250), ("B", 80), ("C", 150), ("D", 150)])
    assert m.counts["opened"] == 4 and m.counts["evicted"] == 1, m.report()
    held = m.contexts()
    assert len(held) == 3 and 0 in held, held         # A, the most used, is kept ...
    assert 1 not in held, held                          # ... B, the least used when D came, went
    assert m.active_serial == max(held)                 # D is learned in B's old slot
    # B's buffered samples are left out of replay: their serial names no context any more.
    stored = learner.buffer.values["context"][:len(learner.buffer)]
    assert (stored == 1).any()


def test_every_byte_of_every_context_is_counted_as_contexts_open_and_are_evicted():
    learner = make("contexts", max_contexts=3, context_window=4)
    m = learner.get_method("contexts")
    per_slot = context_bytes(CLASSES, 32, window=4)
    report = learner.memory_report()
    assert report["parts"]["contexts"] == 3 * per_slot == sum(t.nbytes for t in m.tensors())
    for i, (_, x, y) in enumerate(concepts([("A", 250), ("B", 80), ("C", 150), ("D", 150)])):
        learner.learn(x, y)
        if i % 90 == 0 or i == 629:
            # Everything the learner holds (model, optimizer, buffer with each sample's context, every slot's head,
            # loss window and serial), found by walking its objects, is what the budget counts.
            found, report = owned_bytes(learner), learner.memory_report()
            assert found == report["used_bytes"] <= report["budget_bytes"], (i, found, report["parts"])
            assert report["parts"]["contexts"] == 3 * per_slot, (i, report["parts"])
    assert m.counts["opened"] == 4 and m.counts["evicted"] == 1 and len(m.contexts()) == 3, m.report()
    assert report["buffer_field_bytes_per_sample"]["context"] == 2


EVICTING = [("A", 250), ("B", 80), ("C", 150), ("D", 150)]
# name: (method, settings, stream, step of the save)
RESUME_CASES = {
    "default": ("contexts", {}, ABA, 300),
    "window and kept heads": ("contexts", {"context_window": 3, "context_keep_good": True}, ABA, 300),
    "der++ + multihead": ("der++ + multihead", {}, ABA, 300),
    "full slots, then an eviction": ("contexts", {"max_contexts": 3}, EVICTING, 400),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_save_and_load_resume_exactly_as_learning_without_the_save(case, tmp_path):
    """Saved with two or more contexts held: the loaded learner continues (a concept comes back and the router
    switches, or a new one opens and evicts) bit for bit as one that never saved, predictions and export included."""
    method, kw, plan, at = RESUME_CASES[case]
    data = list(concepts(plan))
    saved, never = make(method, **kw), make(method, **kw)
    for _, x, y in data[:at]:
        saved.learn(x, y)
        never.learn(x, y)
    before = dict(saved.get_method("contexts").counts)
    assert before["opened"] >= 2
    saved.save(tmp_path / "state.pt")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)  # another initialisation, all overwritten by the load
        loaded = OnlineLearner.load(tmp_path / "state.pt", model=models.mlp(DIM, [32], CLASSES), device="cpu")
    assert loaded.get_method("contexts").report() == never.get_method("contexts").report()
    for _, x, y in data[at:]:
        assert loaded.learn(x, y).new_correct == never.learn(x, y).new_correct
    assert_same_state(never.state_dict(), loaded.state_dict())
    after = loaded.get_method("contexts").counts
    assert after != before, "nothing happened to the contexts after the save: the case tests too little"
    x = torch.randn(64, DIM, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(loaded.predict_proba(x.numpy()), never.predict_proba(x.numpy()))
    for index in range(len(loaded.get_method("contexts").contexts())):
        with torch.no_grad():
            assert torch.equal(loaded.export_model().forward_graph(x, torch.tensor(index))[1],
                               never.export_model().forward_graph(x, torch.tensor(index))[1])


def test_save_and_load_with_contexts_resumes_exactly(tmp_path):
    assert_resumes_after_two_contexts("contexts", tmp_path)


@pytest.mark.integration
def test_onnx_snapshot_predicts_with_the_active_context():
    from edge_cl.export.onnx_export import export_onnx
    from edge_cl.export.parity import check_parity

    learner = make("contexts")
    run(learner, ABA[:2])
    assert learner.get_method("contexts").active_serial != 0
    x = torch.randn(32, DIM, generator=torch.Generator().manual_seed(3))
    net = learner.inference_model().eval()
    result = check_parity(net, export_onnx(net), x)
    assert result.ok, result.reason
    assert np.array_equal(net(x).argmax(1).numpy(), learner.predict(x.numpy()))


def test_sizing_a_budget_leaves_no_hook_on_the_model():
    model = models.mlp(DIM, [32], CLASSES)
    OnlineLearner.required_bytes(model, buffer_samples=10, method="contexts")
    contexts_that_fit(model, 100_000)
    assert not any(m._forward_hooks for m in model.modules())
    learner = OnlineLearner(model, budget_bytes=100_000, method="contexts", device="cpu")
    assert sum(len(m._forward_hooks) for m in model.modules()) == 1
    del learner
    gc.collect()  # the learner's own cycles, if any
    assert not any(m._forward_hooks for m in model.modules())


def test_a_model_whose_logits_are_not_a_linear_layer_is_refused_with_what_to_change():
    model = nn.Sequential(nn.Linear(DIM, CLASSES), nn.Tanh())
    model.input_dim = DIM  # type: ignore[assignment]
    with pytest.raises(ValueError, match="last nn.Linear"):
        OnlineLearner(model, budget_bytes=100_000, method="contexts", device="cpu")


def test_an_unknown_detector_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="context_detector='frobnicate'.*unknown"):
        make("contexts", context_detector="frobnicate")


def per_context_accuracy(learner: OnlineLearner, name: str, index: int) -> float:
    """Accuracy on fresh samples of concept ``name`` when context ``index`` (graph index) predicts them."""
    rng = np.random.default_rng(77)
    w = np.random.default_rng(1000).standard_normal((DIM, CLASSES))
    x = rng.standard_normal((500, DIM)).astype(np.float32)
    y = np.asarray(RELABEL[name])[np.argmax(x @ w, axis=1)]
    net = learner.export_model().eval()
    with torch.no_grad():
        logits = net.forward_graph(torch.from_numpy(x), torch.tensor(index))[0]
    return float((logits.argmax(1).cpu().numpy() == y).mean())


def test_der_plus_plus_with_contexts_keeps_both_regimes_of_flipped_labels():
    """'der++ + multihead' (= der++ + contexts): DER++'s replayed rows go through their own context's head, so A's
    labels and logits never pull B's head; alone, DER++ learns B at 55-60% on this stream."""
    torch.set_num_threads(1)
    both, sgd, der = make("der++ + multihead"), make("sgd"), make("der++")
    acc = {"both": run(both, ABA), "sgd": run(sgd, ABA), "der++": run(der, ABA)}
    m = both.get_method("contexts")
    assert both.method == "der+++contexts" and m.counts["opened"] == 2 and m.active_serial == 0, m.report()
    end_b = {k: visit(a, 450, 50) for k, a in acc.items()}
    assert end_b["both"] >= end_b["sgd"] - 0.04 and end_b["both"] >= end_b["der++"] + 0.2, end_b
    back = {k: visit(a, 500, 20) for k, a in acc.items()}
    assert back["both"] >= visit(acc["both"], 200, 50) - 0.1 and back["both"] >= back["sgd"] + 0.3, back
    # Both regimes are kept at the end: each context's head, on fresh samples of its own concept.
    a_index, b_index = m.contexts().index(0), m.contexts().index(m.contexts()[1])
    kept = {"A": per_context_accuracy(both, "A", a_index), "B": per_context_accuracy(both, "B", b_index)}
    assert min(kept.values()) >= 0.85, kept


def test_context_replay_active_sends_other_methods_replay_through_the_predicting_head():
    """context_replay='active' (streams whose old samples do not conflict, class-incremental): DER++'s replayed rows
    go through the active head, so on flipped labels A's replay drags B's head back (B learned far worse than with
    'own'), while this method's own replay still goes through each sample's own head."""
    torch.set_num_threads(1)
    own, active = make("der++ + contexts"), make("der++ + contexts", context_replay="active")
    acc = {"own": run(own, ABA[:2]), "active": run(active, ABA[:2])}
    end_b = {k: visit(a, 450, 50) for k, a in acc.items()}
    assert end_b["active"] <= end_b["own"] - 0.15, end_b
    assert active.get_method("contexts").counts["opened"] == 2
