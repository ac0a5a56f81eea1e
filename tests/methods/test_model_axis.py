"""The model axis of the contract (issue #28): every registered method, and the documented combinations, on every
model of ``tests/model_zoo.py`` (Conv1d, BatchNorm, GRU, LSTM, LayerNorm + Dropout, a hand-written forward):
it learns a seeded drifting stream, every byte it owns is counted and within the budget, resume is bit-identical,
inputs are not mutated and a non-finite step changes nothing. Plus oracles: importance on BatchNorm and recurrent
models equals a plain per-sample autograd loop, for labelled updates and for label-free ``observe``."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_cl import OnlineLearner, methods
from edge_cl.methods.ewc import OnlineEWC
from edge_cl.methods.mas import OnlineMAS
from edge_cl.methods.scp import SlicedCramerPreservation
from tests.model_zoo import ZOO, build
from tests.oracles import assert_same_state, owned_bytes

CASES = [*methods.available(), "er+ewc", "er+mas", "er+si", "er+rwalk", "er+scp"]
DIM, CLASSES, BATCH = 12, 4, 8
# Methods built on one kind of model (pnn: columns of a Linear chain) refuse the others when the learner is built; the
# axis checks that refusal names the method and what to use, and runs them on the models they take.
MODELS_TAKEN = {"pnn": {"mlp"}, "latent-replay": {"mlp"}}


def make(method: str, model: str, seed: int = 0, **kw: object) -> OnlineLearner:
    net = build(model, DIM, CLASSES, seed)
    options = {"replay_batch": 8, "trigger_params": {"window": 5}, "importance_every": 2, "lr": 0.05} | kw
    declared = {k for n in methods.parse(method) for k in methods.get(n).Settings.model_fields}
    # Importance settings go only to combinations with an importance method: a setting never changes a method.
    options = {k: v for k, v in options.items() if not k.startswith("importance_") or k in declared}
    budget = OnlineLearner.required_bytes(net, buffer_samples=64, method=method, **options) + 1000
    return OnlineLearner(net, budget_bytes=budget, method=method, seed=seed, device="cpu", **options)


def drifting(seed: int, steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Class prototypes that move a little every step (gradual drift), noisy samples around them; by the end
    each prototype has moved about one unit of its norm, so a learner that stops learning falls behind."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((CLASSES, DIM)).astype(np.float32) * 1.5
    velocity = rng.standard_normal((CLASSES, DIM)).astype(np.float32) * (1.5 / max(steps, 1))
    for i in range(steps):
        y = rng.integers(0, CLASSES, BATCH)
        x = protos[y] + i * velocity[y] + 0.5 * rng.standard_normal((BATCH, DIM)).astype(np.float32)
        yield x.astype(np.float32), y.astype(np.int64)


def _taken(method: str, model: str) -> bool:
    """Whether every method of ``method`` takes ``model`` (MODELS_TAKEN lists those that take only some)."""
    return all(model in MODELS_TAKEN.get(name, {model}) for name in methods.parse(method))


# The (method, model) pairs the suite runs; a method is tested on a model it does not take only for its refusal.
PAIRS = [(m, z) for m in CASES for z in ZOO if _taken(m, z)]
REFUSED = [(m, z) for m in CASES for z in ZOO if not _taken(m, z)]


@pytest.fixture(params=PAIRS, ids=[f"{m}-{z}" for m, z in PAIRS])
def pair(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.mark.parametrize(("method", "model"), REFUSED, ids=[f"{m}-{z}" for m, z in REFUSED])
def test_a_model_a_method_does_not_take_is_refused_with_what_to_use(method, model):
    name = next(n for n in methods.parse(method) if model not in MODELS_TAKEN.get(n, {model}))
    with pytest.raises(ValueError, match=f"method '{name}'.*[Uu]se "):
        make(method, model)


def test_learns_a_drifting_stream_within_budget_without_touching_inputs(pair):
    method, model = pair
    learner = make(method, model, lr=0.2)  # recurrent models crawl at the contract's 0.05 in this few steps
    report = learner.memory_report()
    for name in methods.parse(method):
        assert report["parts"][name] == sum(t.nbytes for t in learner.get_method(name).tensors())
    losses = []
    steps = 160
    for i, (x, y) in enumerate(drifting(1, steps)):
        x0, y0 = x.copy(), y.copy()
        stats = learner.learn(x, y)
        learner.observe(x)
        assert np.array_equal(x, x0) and np.array_equal(y, y0), f"step {i} mutated its inputs"
        assert not stats.skipped, f"step {i} skipped on finite data"
        losses.append(stats.loss)
        if i % 40 == 0 or i == steps - 1:
            found, report = owned_bytes(learner), learner.memory_report()
            assert found == report["used_bytes"] <= report["budget_bytes"], (i, found, report["parts"])
    first, last = float(np.mean(losses[:30])), float(np.mean(losses[-30:]))
    assert last < 0.6 * first, f"{method} on {model}: mean loss {first:.3f} over the first 30 steps, {last:.3f} " \
                               f"over the last 30"
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


def test_resume_is_bit_identical(pair, tmp_path):
    method, model = pair
    data = list(drifting(2, 60))
    a = make(method, model)
    for x, y in data[:40]:
        a.learn(x, y)
    a.consolidate()  # importance methods then carry a live penalty across the save
    a.save(tmp_path / "state.pt")
    b = OnlineLearner.load(tmp_path / "state.pt", model=build(model, DIM, CLASSES, seed=99), device="cpu")
    # Dropout draws from torch's global generator, which is the user's, not the learner's state: both runs start
    # it from one seed, one after the other.
    for learner in (a, b):
        torch.manual_seed(7)
        for x, y in data[40:]:
            learner.learn(x, y)
            learner.observe(x)
    assert a.step == b.step == 60
    assert_same_state(a.state_dict(), b.state_dict())


def test_a_non_finite_step_changes_nothing(pair):
    method, model = pair
    learner, twin = make(method, model), make(method, model)
    for i, (x, y) in enumerate(drifting(3, 30)):
        for one in (learner, twin):
            torch.manual_seed(i)  # Dropout's masks come from the global generator: the same for both
            one.learn(x, y)
    before = copy.deepcopy(learner.state_dict())
    bad, y = next(drifting(4, 1))
    bad[:, 2] = np.nan  # every row (one bad row alone is left out and the others learned)
    assert learner.learn(bad, y).skipped
    after = learner.state_dict()
    assert after["counters"].pop("skipped_steps") == before["counters"].pop("skipped_steps") + 1
    assert_same_state(before, after)
    torch.manual_seed(3)
    x, y = next(drifting(5, 1))
    learner.learn(x, y)
    torch.manual_seed(3)
    twin.learn(x, y)
    for p, q in zip(learner.model.state_dict().values(), twin.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)


# --- importance oracles on models vmap cannot simply run --------------------------------------------------------------


def _per_sample_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, kind: str) -> list[torch.Tensor]:
    """The definition, by hand: mean over samples of phi(gradient of one sample's loss), the model in eval mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    was = model.training
    model.eval()
    try:
        for i in range(x.shape[0]):
            out = model(x[i:i + 1])
            loss = F.cross_entropy(out, y[i:i + 1], reduction="sum") if kind == "ewc" else out.pow(2).sum()
            for t, g in zip(total, torch.autograd.grad(loss, params), strict=True):
                t += (g.pow(2) if kind == "ewc" else g.abs()) / x.shape[0]
    finally:
        model.train(was)
    return total


def _trained(name: str) -> torch.nn.Module:
    """A zoo model after some train-mode forwards, so BatchNorm's running statistics are not their initial 0 / 1
    (an estimate that ignored them would then differ from the oracle)."""
    net = build(name, DIM, CLASSES, seed=1)
    with torch.no_grad():
        for x, _ in drifting(6, 5):
            net(torch.from_numpy(x) * 3 + 1)
    return net


@pytest.mark.parametrize("cls,kind", [(OnlineEWC, "ewc"), (OnlineMAS, "mas")])
@pytest.mark.parametrize("name", ["conv_bn", "gru", "lstm", "layernorm_dropout"])
def test_importance_equals_a_per_sample_autograd_loop(cls, kind, name):
    net = _trained(name)
    net.train()
    state = copy.deepcopy(net.state_dict())
    imp = cls.standalone(net, lam=1.0, chunk=3)
    x, y = torch.randn(7, DIM), torch.randint(0, CLASSES, (7,))
    fast = imp.estimate(x, y if kind == "ewc" else None)
    slow = _per_sample_loop(net, x, y, kind)
    for f, s in zip(fast, slow, strict=True):
        torch.testing.assert_close(f, s, rtol=1e-4, atol=1e-7)
    assert net.training and all(m.training for m in net.modules()), "the estimate left the model in eval mode"
    assert_same_state(state, net.state_dict())  # running statistics untouched


def test_the_recurrent_fallback_is_chosen_once_and_logged(caplog):
    imp = OnlineEWC.standalone(_trained("gru"), lam=1.0)
    x, y = torch.randn(4, DIM), torch.randint(0, CLASSES, (4,))
    with caplog.at_level(logging.WARNING, logger="edge_cl.methods.importance"):
        imp.estimate(x, y)
        imp.estimate(x, y)
    warnings = [r for r in caplog.records if "one backward per sample" in r.getMessage()]
    assert len(warnings) == 1 and imp._vmap_failed is not None
    assert OnlineEWC.standalone(_trained("conv_bn"), lam=1.0)._vmap_failed is None  # BN in eval mode: vmap runs


@pytest.mark.parametrize("name", ["conv_bn", "gru"])
def test_label_free_observe_folds_the_per_sample_estimate(name):
    """``learner.observe(x)`` (MAS with no labels) folds the same per-sample estimate the oracle gives."""
    learner = make("er+mas", name, importance_normalize=False, importance_samples=64)
    for x, y in drifting(7, 10):
        learner.learn(x, y)
    mas = learner.get_method("mas")
    x, _ = next(drifting(8, 1))
    buffers = copy.deepcopy(dict(learner.model.named_buffers()))
    expected = _per_sample_loop(learner.model, torch.from_numpy(x), None, "mas")
    before = [c.clone() for c in mas.current]
    count = mas.current_count
    assert learner.observe(x)
    weight = 1.0 / (count + 1)
    for c, b, e in zip(mas.current, before, expected, strict=True):
        torch.testing.assert_close(c, b.lerp(e, weight), rtol=1e-4, atol=1e-7)
    assert_same_state(buffers, dict(learner.model.named_buffers()))


@pytest.mark.parametrize("name", ["conv_bn", "gru"])
def test_scp_estimate_equals_a_loop_over_directions(name):
    net = _trained(name)
    net.train()
    state = copy.deepcopy(net.state_dict())
    scp = SlicedCramerPreservation.standalone(net, lam=1.0, generator=torch.Generator().manual_seed(4))
    x = torch.randn(6, DIM)
    fast = scp.estimate(x, None)
    scp2 = SlicedCramerPreservation.standalone(net, lam=1.0, generator=torch.Generator().manual_seed(4))
    xi = scp2.directions(CLASSES, x.device)
    params = list(net.parameters())
    net.eval()
    slow = [torch.zeros_like(p) for p in params]
    for d in xi:
        grads = torch.autograd.grad(net(x).mean(0) @ d, params)
        for s, g in zip(slow, grads, strict=True):
            s += g.pow(2) / len(xi)
    net.train()
    for f, s in zip(fast, slow, strict=True):
        torch.testing.assert_close(f, s, rtol=1e-4, atol=1e-8)
    assert_same_state(state, net.state_dict())
