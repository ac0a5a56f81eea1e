"""Oracle tests for online EWC and MAS: per-sample maths against slow loops, the shared penalty."""

import pytest
import torch
import torch.nn.functional as F

from edge_cl import models
from edge_cl.methods import get
from edge_cl.methods.ewc import OnlineEWC
from edge_cl.methods.mas import OnlineMAS

# The learner's input defaults (standardize=None, float16 storage) are not what these tests are about.
INPUTS = {"standardize": False, "storage": "float32"}


def _model(seed=0):
    torch.manual_seed(seed)
    return models.mlp(6, [5], 3)


def _slow_importance(model, x, y, method):
    total = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(x.shape[0]):
        model.zero_grad()
        out = model(x[i:i + 1])
        if method == "ewc":
            F.cross_entropy(out, y[i:i + 1]).backward()
            contrib = [p.grad.pow(2) for p in model.parameters()]
        else:
            out.pow(2).sum().backward()
            contrib = [p.grad.abs() for p in model.parameters()]
        for t, c in zip(total, contrib):
            t += c / x.shape[0]
    return total


def _cnn(seed=0):
    torch.manual_seed(seed)
    return models.cnn1d(channels=2, length=3, num_classes=3, conv=[4], kernel_size=3, hidden=5)


@pytest.mark.parametrize("cls,method", [(OnlineEWC, "ewc"), (OnlineMAS, "mas")])
@pytest.mark.parametrize("make,chunk", [(_model, 32), (_cnn, 2), (_cnn, 32)])
def test_estimate_matches_a_slow_per_sample_loop(cls, method, make, chunk):
    """The MLP takes the linear-layer shortcut, the CNN the vmap path (in chunks): both are exact."""
    model = make()
    imp = cls.standalone(model, lam=1.0, chunk=chunk)
    assert imp._linear_only() == (make is _model)
    x, y = torch.randn(9, 6), torch.randint(0, 3, (9,))
    fast = imp.estimate(x, y if method == "ewc" else None)
    slow = _slow_importance(model, x, y, method)
    for f, s in zip(fast, slow):
        torch.testing.assert_close(f, s, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [OnlineEWC, OnlineMAS])
def test_linear_shortcut_equals_vmap(cls):
    imp = cls.standalone(_model(), lam=1.0)
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    for a, b in zip(imp._estimate_linear(x, y), imp._estimate_vmap(x, y)):
        torch.testing.assert_close(a, b)


def test_per_sample_is_not_the_batch_gradient():
    """Squaring per-sample gradients differs from squaring the batch gradient: guards the oracle."""
    model = _model()
    x, y = torch.randn(9, 6), torch.randint(0, 3, (9,))
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    batch_sq = [p.grad.pow(2) for p in model.parameters()]
    fast = OnlineEWC.standalone(model, lam=1.0).estimate(x, y)
    assert not torch.allclose(fast[0], batch_sq[0])


@pytest.mark.parametrize("cls", [OnlineEWC, OnlineMAS])
def test_penalty_gradient_is_2_lambda_omega_times_displacement(cls):
    model = _model()
    imp = cls.standalone(model, lam=0.7)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    imp.update(x, y)
    imp.consolidate()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    expected = [2 * 0.7 * o * (p.detach() - a) for o, p, a in zip(imp.omega, imp.params, imp.anchor)]
    model.zero_grad()
    imp.penalty().backward()
    for p, e in zip(imp.params, expected):
        torch.testing.assert_close(p.grad, e)
    # The hot path adds the same gradient without autograd, and returns the same value.
    for p in imp.params:
        p.grad = torch.zeros_like(p)
    value = imp.add_penalty_grad_()
    for p, e in zip(imp.params, expected):
        torch.testing.assert_close(p.grad, e)
    torch.testing.assert_close(value, imp.penalty().detach())
    assert value > 0


def test_online_ewc_fisher_decays_with_gamma_and_running_mean_is_exact():
    model = _model()
    imp = OnlineEWC.standalone(model, lam=1.0, gamma=0.5, samples=100)
    batches = [(torch.randn(4, 6), torch.randint(0, 3, (4,))) for _ in range(3)]
    estimates = [imp.estimate(x, y) for x, y in batches]
    for x, y in batches:
        imp.update(x, y)
    mean = [sum(e[i] for e in estimates) / 3 for i in range(len(imp.params))]
    for cur, m in zip(imp.current, mean):
        torch.testing.assert_close(cur, m)
    imp.consolidate()
    first = [o.clone() for o in imp.omega]
    imp.update(*batches[0])
    imp.consolidate()
    for o, f, e in zip(imp.omega, first, estimates[0]):
        torch.testing.assert_close(o, 0.5 * f + e)  # F <- gamma F + F_new
    assert imp.consolidations == 2 and imp.current_count == 0


def test_update_subsamples_to_bound_cost():
    model = _model()
    imp = OnlineMAS.standalone(model, lam=1.0, samples=3, generator=torch.Generator().manual_seed(0))
    imp.update(torch.randn(50, 6), None)
    assert imp.updates == 1 and imp.seconds > 0


def test_mas_needs_no_labels_ewc_does():
    model = _model()
    OnlineMAS.standalone(model, lam=1.0).update(torch.randn(4, 6), None)
    with pytest.raises(ValueError, match="needs labels"):
        OnlineEWC.standalone(model, lam=1.0).update(torch.randn(4, 6), None)


def test_penalty_is_zero_at_the_anchor_and_inactive_before_consolidation():
    imp = OnlineMAS.standalone(_model(), lam=5.0)
    assert not imp.active
    imp.update(torch.randn(4, 6), None)
    imp.consolidate()
    assert imp.active and imp.penalty().detach().item() == 0.0


def test_registry_and_argument_errors():
    assert get("ewc") is OnlineEWC and get("mas") is OnlineMAS
    with pytest.raises(ValueError, match="method 'no-such-method' is unknown; available: .*ewc"):
        get("no-such-method")
    with pytest.raises(ValueError, match="importance_gamma"):
        OnlineEWC.standalone(_model(), lam=1.0, gamma=1.5)
    with pytest.raises(ValueError, match="importance_lambda"):
        OnlineEWC.standalone(_model(), lam=-1.0)


def test_state_roundtrip():
    model = _model()
    imp = OnlineEWC.standalone(model, lam=1.0)
    imp.update(torch.randn(4, 6), torch.randint(0, 3, (4,)))
    imp.consolidate()
    imp.update(torch.randn(4, 6), torch.randint(0, 3, (4,)))
    other = OnlineEWC.standalone(model, lam=1.0)
    other.load_state_dict(imp.state_dict())
    for a, b in zip(other.tensors(), imp.tensors()):
        assert torch.equal(a, b)
    assert (other.current_count, other.consolidations) == (1, 1)
    with pytest.raises(ValueError, match="'ewc'"):
        OnlineMAS.standalone(model, lam=1.0).load_state_dict(imp.state_dict())


def test_max_omega_caps_consolidated_importance():
    model = _model()
    imp = OnlineMAS.standalone(model, lam=1.0, max_omega=1e-3)
    imp.update(torch.randn(8, 6) * 10, None)
    raw = [c.clone() for c in imp.current]
    imp.consolidate()
    assert imp.clamped == sum(int((r > 1e-3).sum()) for r in raw) > 0
    for o, r in zip(imp.omega, raw):
        torch.testing.assert_close(o, r.clamp(max=1e-3))
    with pytest.raises(ValueError, match="max_omega"):
        OnlineMAS.standalone(model, lam=1.0, max_omega=0.0)


def test_capped_penalty_keeps_sgd_stable_where_the_raw_one_diverges():
    """SGD on the penalty alone: with 2 lr lambda omega > 2 it diverges; the learner's cap prevents it."""
    lr, lam = 0.5, 10.0
    for cap, should_diverge in ((None, True), (1.0 / (2 * lr * lam), False)):
        model = _model()
        imp = OnlineEWC.standalone(model, lam=lam, max_omega=cap)
        for o in imp.current:
            o.fill_(1.0)  # 2 * lr * lam * omega = 10
        imp.current_count = 1
        imp.consolidate()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        for _ in range(20):
            for p in imp.params:
                p.grad = torch.zeros_like(p)
            imp.add_penalty_grad_()
            with torch.no_grad():
                for p in imp.params:
                    p.sub_(lr * p.grad)
        distance = max(float((p.detach() - a).abs().max()) for p, a in zip(imp.params, imp.anchor))
        assert (distance > 1.0) == should_diverge, distance


def test_er_mas_keeps_learning_the_second_task():
    """Regression (issue #10): with the pre-#10 raw MAS importance and lambda 0.2 the penalty froze the network
    after the first consolidation (second-task accuracy 0.29 here); normalised importance keeps it plastic."""
    import numpy as np

    from edge_cl import OnlineLearner
    from tests.streams import permuted_prototypes

    torch.manual_seed(0)
    model = models.mlp(input_dim=32, hidden=[32], num_classes=10)
    budget = OnlineLearner.required_bytes(model, buffer_samples=200, method="er+mas")
    learner = OnlineLearner(model, budget_bytes=budget, method="er+mas", lr=0.1, device="cpu", seed=3,
                            trigger_params={"window": 20})
    draw = permuted_prototypes(seed=7)
    hits = []
    for step in range(600):
        x, y = draw(10, 0 if step < 300 else 1)
        stats = learner.learn(x, y)
        if step >= 500:
            hits.append(stats.new_correct / 10)
    assert learner.consolidations >= 1 and learner.importance.active  # the penalty was on
    xt, yt = draw(1000, 1)
    assert (learner.predict(xt) == yt).mean() >= 0.6
    assert np.mean(hits) >= 0.6


def test_normalised_importance_has_mean_one_whatever_the_logit_scale():
    model = _model()
    imp = OnlineMAS.standalone(model, lam=1.0, importance_normalize=True)
    x = torch.randn(8, 6)
    imp.update(x, None)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # logits ~ 27x larger: raw MAS importance grows with them
    imp.update(x, None)
    imp.consolidate()
    total = sum(float(o.sum()) for o in imp.omega)
    count = sum(o.numel() for o in imp.omega)
    assert total / count == pytest.approx(1.0, rel=1e-5)
    raw = OnlineMAS.standalone(_model(), lam=1.0)
    raw.update(x, None)
    raw.consolidate()
    assert sum(float(o.sum()) for o in raw.omega) / count != pytest.approx(1.0, rel=1e-2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_compact_state_halves_omega_and_estimate_and_tracks_float32(dtype):
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    wide = OnlineEWC.standalone(_model(), lam=1.0, importance_normalize=True)
    narrow = OnlineEWC.standalone(_model(), lam=1.0, importance_normalize=True, state_dtype=dtype)
    anchor = sum(t.nbytes for t in wide.anchor)
    assert (sum(t.nbytes for t in narrow.tensors()) - anchor) * 2 == sum(t.nbytes for t in wide.tensors()) - anchor
    for imp in (wide, narrow):
        imp.update(x, y)
        imp.consolidate()
        with torch.no_grad():
            for p in imp.params:
                p.add_(0.01)
        for p in imp.params:
            p.grad = torch.zeros_like(p)
        imp.add_penalty_grad_()
    tol = 1e-2 if dtype == "bfloat16" else 2e-3
    for a, b in zip(wide.params, narrow.params):
        torch.testing.assert_close(a.grad, b.grad, rtol=tol, atol=tol * float(a.grad.abs().max()))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_compact_state_saturates_where_importance_is_concentrated_instead_of_turning_nan(dtype):
    # One input feature carries the whole output, so nearly all importance sits on one of 200,001 weights: with
    # omega of mean 1 that weight's share, ~1e5, is past float16's 65504. Stored as inf, it made omega NaN at the
    # consolidation, and with it the penalty and every weight it pulled.
    torch.manual_seed(0)
    model = torch.nn.Linear(200_000, 1)
    x = torch.zeros(4, 200_000)
    x[:, 0] = 1.0
    mas = OnlineMAS.standalone(model, lam=1.0, importance_normalize=True, importance_scope="model", state_dtype=dtype)
    mas.update(x, None)
    mas.consolidate()
    for t in (*mas.current, *mas.omega):
        assert torch.isfinite(t.float()).all()
    top = float(mas.omega[0].float().max())
    assert top == (torch.finfo(torch.float16).max if dtype == "float16" else pytest.approx(200_001 / 2, rel=1e-2))
    with torch.no_grad():
        model.weight.add_(0.01)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    assert torch.isfinite(mas.add_penalty_grad_()) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    # A float32 state (omega in other units) loaded into the compact one saturates the same way.
    wide = OnlineMAS.standalone(model, lam=1.0, importance_normalize=True, importance_scope="model")
    wide.update(x, None)
    wide.consolidate()
    mas.load_state_dict({**wide.state_dict(), "omega_scale": 1e-3})
    assert all(torch.isfinite(o.float()).all() for o in mas.omega)


# --- the lean step (issue #11): the penalty applied to the weights, the estimate taken inside the step -------

def _learner(method, model=None, **kw):
    from edge_cl import OnlineLearner

    model = _model() if model is None else model
    kw = {**INPUTS, **kw}  # the estimate is compared on the model itself: raw inputs
    budget = OnlineLearner.required_bytes(model, buffer_samples=50, method=method, **kw)
    return OnlineLearner(model, budget, method=method, lr=0.1, seed=1, trigger=None, **kw)


def _stream(steps, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 6, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(steps)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", ["ewc", "mas"])
def test_pulling_the_weights_is_the_penalty_gradients_sgd_step(name, dtype):
    """Under plain SGD the penalty is applied to the weights (no temporary); it must be the step its gradient
    would have taken: the same parameters, to float rounding, after many steps and consolidations. bfloat16
    omega is kept multiplied by the pull, as float32's (one lerp); float16's is not (its subnormals)."""
    pulled, graded = (_learner(f"er+{name}", importance_lambda=2.0, state_dtype=dtype) for _ in range(2))
    method = pulled.get_method(name)
    assert (method.scale == method.pull) == (dtype != "float16")
    graded.get_method(name).pulls_weights = False
    assert pulled.get_method(name).pulls_weights
    for i, (x, y) in enumerate(_stream(120)):
        for learner in (pulled, graded):
            learner.learn(x, y)
            if i % 30 == 9:
                learner.consolidate()
    moved = sum(float((p.detach() - a).abs().sum()) for p, a in zip(pulled.params, pulled.get_method(name).anchor))
    assert moved > 0 and pulled.get_method(name).active
    for a, b in zip(pulled.params, graded.params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hidden,activation,chain", [([5], "relu", True), ([5, 4], "relu", True),
                                                     ([5, 4], "gelu", False)])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("cls", [OnlineEWC, OnlineMAS])
def test_the_estimate_taken_inside_the_step_is_the_estimate_at_the_steps_weights(cls, normalize, hidden, activation,
                                                                               chain):
    """The estimate comes from the step's own forward (new rows only, replayed rows in the batch): it equals
    the method's standalone estimate on the same rows at the weights before the update (normalised to mean
    one when the method normalises). A Linear/ReLU chain gets its layers' output gradients in closed form,
    other activations from a partial backward."""
    import copy

    torch.manual_seed(0)
    learner = _learner(f"er+{cls.name}", models.mlp(6, hidden, 3, activation=activation), importance_every=3,
                       importance_normalize=normalize)
    method = learner.get_method(cls.name)
    assert method._layers  # the MLP takes the in-step path
    assert (method._chain is not None) is chain
    stream = _stream(3)
    for x, y in stream[:2]:
        learner.learn(x, y)
    assert method.updates == 0 and len(learner.buffer) > 0  # the estimating step also replays
    before = cls.standalone(copy.deepcopy(learner.model), lam=1.0)
    x, y = stream[2]
    expected = before.estimate(x, y if cls.needs_labels else None)
    if normalize:
        mean = sum(float(e.sum()) for e in expected) / sum(e.numel() for e in expected)
        expected = [e / mean for e in expected]
    learner.learn(x, y)
    assert method.updates == 1 and method._captured is None and not method._hooks
    for got, want in zip(method.current, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


class _SplitChain(torch.nn.Module):
    """A Linear/ReLU Sequential whose children are run one by one with a scaling in between: its structure
    matches a chain, but the closed form would miss the scaling, so the estimate must come from autograd."""

    input_dim = 6

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))

    def forward(self, x):
        return self.body[2](2.0 * self.body[1](self.body[0](x)))


@pytest.mark.parametrize("cls", [OnlineEWC, OnlineMAS])
def test_a_chain_not_run_whole_takes_the_partial_backward(cls):
    import copy

    torch.manual_seed(0)
    learner = _learner(f"er+{cls.name}", _SplitChain(), importance_every=3, importance_normalize=False)
    method = learner.get_method(cls.name)
    assert method._chain is not None  # the structure matches ...
    stream = _stream(3)
    for x, y in stream[:2]:
        learner.learn(x, y)
    x, y = stream[2]
    expected = cls.standalone(copy.deepcopy(learner.model), lam=1.0).estimate(x, y if cls.needs_labels else None)
    learner.learn(x, y)
    assert method.updates == 1
    for got, want in zip(method.current, expected):  # ... but the forward did not run it whole
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


class _Twice(torch.nn.Module):
    """One Linear used twice: the in-step shortcut cannot see per-use inputs, so the estimate runs after the
    step on its own forward."""

    input_dim = 6

    def __init__(self):
        super().__init__()
        self.hidden, self.out = torch.nn.Linear(6, 6), torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(torch.relu(self.hidden(x)))))


def test_a_layer_used_twice_falls_back_to_the_estimate_after_the_step():
    from edge_cl import OnlineLearner

    torch.manual_seed(0)
    model = _Twice()
    budget = OnlineLearner.required_bytes(model, buffer_samples=20, method="er+ewc")
    learner = OnlineLearner(model, budget, method="er+ewc", lr=0.1, trigger=None, importance_every=1,
                            importance_normalize=False)
    method = learner.get_method("ewc")
    x, y = _stream(1)[0]
    learner.learn(x, y)
    after = OnlineEWC.standalone(learner.model, lam=1.0).estimate(x, y)  # post-update weights: the fallback
    assert method.updates == 1 and not method._hooks
    for got, want in zip(method.current, after):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [OnlineEWC, OnlineMAS])
def test_closed_form_logit_gradient_equals_autograd(cls):
    from edge_cl.methods.importance import ImportanceMethod

    imp = cls.standalone(_model(), lam=1.0)
    z, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    labels = y if cls.needs_labels else None
    torch.testing.assert_close(imp.sample_loss_grad(z, labels), ImportanceMethod.sample_loss_grad(imp, z, labels))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["ewc", "mas"])
def test_the_penalty_value_on_flat_buffers_equals_the_plain_formula(name, dtype):
    learner = _learner(f"er+{name}", state_dtype=dtype)
    for i, (x, y) in enumerate(_stream(30)):
        learner.learn(x, y)
        if i == 9:
            learner.consolidate()
    method = learner.get_method(name)
    assert method.flat_params is not None and method.scale != 1.0
    plain = method.lam * sum(float((o * (p.detach() - a).pow(2)).sum())
                             for o, p, a in zip(method.importance_values(), method.params, method.anchor))
    assert plain > 0
    assert float(method.penalty_value()) == pytest.approx(plain, rel=1e-4)
    assert float(method.penalty().detach()) == pytest.approx(plain, rel=1e-4)


@pytest.mark.parametrize("name", ["ewc", "mas"])
def test_the_reported_penalty_is_refreshed_at_consolidation_and_every_tenth_estimate(name):
    from edge_cl.methods.importance import VALUE_EVERY

    learner = _learner(f"er+{name}", importance_every=2)
    method = learner.get_method(name)
    stream = _stream(3 + 2 * VALUE_EVERY + 1)
    reported = [learner.learn(x, y).penalty for x, y in stream[:3]]
    assert reported == [0.0, 0.0, 0.0]  # nothing consolidated yet
    learner.consolidate()
    values = []
    for x, y in stream[3:]:
        expected = float(method.penalty_value())   # at the weights the step starts from
        values.append((learner.step + 1, learner.learn(x, y).penalty, expected))
    _, first, expected = values[0]
    assert first == expected == 0.0   # refreshed by the consolidation: the weights are at the new anchor
    for step, got, expected in values[1:]:
        if step % (2 * VALUE_EVERY) == 0:
            assert got == pytest.approx(expected, rel=1e-6) and got > 0
            break
        assert got == first   # held between refreshes
    else:
        raise AssertionError("no refresh within 2 * VALUE_EVERY steps")


def test_an_in_step_estimate_that_overflows_is_rejected_and_changes_nothing():
    learner = _learner("er+ewc", importance_every=1)
    for x, y in _stream(3):
        learner.learn(x, y)
    method = learner.get_method("ewc")
    before = [c.clone() for c in method.current]
    updates, rejected = method.updates, method.rejected
    layers = method._layers
    inputs = [torch.full((4, m.in_features), 1e30) for m in layers]   # squares overflow float32
    grads = [torch.full((4, m.out_features), 1e30) for m in layers]
    method._fold_captured(inputs, grads)
    assert method.rejected == rejected + 1 and method.updates == updates
    for b, c in zip(before, method.current):
        assert torch.equal(b, c)


@pytest.mark.parametrize("cls", [OnlineEWC, OnlineMAS])
def test_per_tensor_scope_gives_every_parameter_tensor_mean_one(cls):
    # With large raw units in (here x 1000) the weights take nearly all of the importance when omega is normalised
    # over the whole model, the biases next to none; per tensor, every weight and bias keeps mean 1 and its own
    # pattern.
    x, y = torch.randn(16, 6) * 1000.0, torch.randint(0, 3, (16,))
    whole = cls.standalone(_model(), lam=1.0, importance_normalize=True, importance_scope="model")
    each = cls.standalone(_model(), lam=1.0, importance_normalize=True, importance_scope="tensor")
    for imp in (whole, each):
        imp.update(x, y)
        imp.consolidate()
    means = [float(o.mean()) for o in whole.omega]
    assert sum(float(o.sum()) for o in whole.omega) / sum(o.numel() for o in whole.omega) == pytest.approx(1.0)
    assert max(means) > 0.5 and min(means) < 0.01  # some tensors crowd out the others
    for o_each, o_whole in zip(each.omega, whole.omega):
        assert float(o_each.mean()) == pytest.approx(1.0, rel=1e-5)
        torch.testing.assert_close(o_each, o_whole * (1.0 / float(o_whole.mean())), rtol=1e-5, atol=1e-7)


def test_importance_scope_defaults_are_per_method():
    from edge_cl.methods.importance import ImportanceMethod
    from edge_cl.methods.registry import available
    for name in available():
        cls = get(name)
        if isinstance(cls, type) and issubclass(cls, ImportanceMethod):
            scope = cls.Settings().importance_scope  # type: ignore[attr-defined]
            assert scope == ("tensor" if name == "mas" else "model"), name  # chosen on validation seeds
    with pytest.raises(ValueError, match="importance_scope"):
        OnlineMAS.Settings(importance_scope="layer")


def _saturated_model(gap=46.0):
    # 2-2-2 ReLU MLP whose logits on x = (1, 0) are (gap, 0): in float32 the softmax is (1, e^-gap) exactly, so
    # EWC's per-sample gradient is (0, ~1e-20) and its square a subnormal ~1e-40: an estimate that is positive
    # but numerically nothing.
    model = models.mlp(2, [2], 2)
    with torch.no_grad():
        first, last = (m for m in model.modules() if isinstance(m, torch.nn.Linear))
        first.weight.copy_(torch.eye(2))
        last.weight.copy_(torch.tensor([[gap, 0.0], [0.0, 0.0]]))
        first.bias.zero_()
        last.bias.zero_()
    return model


@pytest.mark.parametrize("chain", [True, False])
def test_an_estimate_of_numerically_zero_importance_is_folded_as_zero_not_blown_up(chain):
    # Normalising such an estimate to mean 1 multiplied it by ~1e40, past float32's range: the step raised
    # "value cannot be converted to type float without overflow" (seen on elec2, batch 1, a confident model).
    from edge_cl import OnlineLearner
    from edge_cl.methods.importance import MIN_MEAN

    model = _saturated_model()
    budget = OnlineLearner.required_bytes(model, buffer_samples=8, method="ewc")
    learner = OnlineLearner(model, budget, method="ewc", lr=1e-6, seed=1, trigger=None, importance_every=1)
    if not chain:
        learner._use_chain(False)
    method = learner.get_method("ewc")
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    for _ in range(3):
        learner.learn(x, y)
    assert method.updates == 3 and method.rejected == 0
    raw = sum(float(t.sum()) for t in method.estimate(x, y))
    assert 0 < raw < MIN_MEAN  # the case under test: positive, numerically nothing
    for c in method.current:
        assert bool(torch.isfinite(c).all()) and float(c.abs().max()) < MIN_MEAN
    method.consolidate()  # and it consolidates to (numerically) zero importance, no error
    for o in method.omega:
        assert bool(torch.isfinite(o).all()) and float(o.abs().max()) < MIN_MEAN
    # The estimator outside the step (the standalone one) folds it the same way.
    imp = OnlineEWC.standalone(_saturated_model(), lam=1.0, importance_normalize=True)
    imp.update(x, y)
    assert imp.updates == 1 and float(max(c.abs().max() for c in imp.current)) < MIN_MEAN
    deferred = OnlineEWC.standalone(_saturated_model(), lam=1.0, importance_normalize=True)
    deferred.update_deferred(x, y)  # the CUDA-graph step's estimate, with no host read
    assert deferred.updates == 1 and float(max(c.abs().max() for c in deferred.current)) < MIN_MEAN
