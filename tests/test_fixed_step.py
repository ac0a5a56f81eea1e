"""The fixed-shape step (edge_cl.fixed_step) on the CPU: padding, the reservoir, skips, fallbacks and resume.

Its CUDA-graph capture is tested in tests/test_cuda.py (skipped without a GPU); everything the graph records
is this same step, run here uncaptured.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch
from torch import nn

from edge_cl import OnlineLearner, methods, models
from edge_cl.fixed_step import bucket_of, host_work, unsupported_reason

# Every registered method whose step fits the fixed shape (declared, or derived from the hooks it overrides), alone
# where it replays, plus the others after er.
FIXED = [n for n in methods.available() if host_work(methods.get(n)) is None and methods.get(n).uses_buffer]
FIXED += [f"er+{n}" for n in methods.available() if host_work(methods.get(n)) is None and not methods.get(n).uses_buffer
          and n != "sgd"]


def _learner(method: str = "er", *, standardize: bool = False, seed: int = 0, **options) -> OnlineLearner:
    torch.manual_seed(seed)
    return OnlineLearner(models.mlp(12, [16], 3), 61_000, method=method, replay_batch=6, lr=0.2, seed=seed,
                         step_mode=options.pop("step_mode", "fixed"), standardize=standardize, trigger=None,
                         **options)


def _stream(steps: int, seed: int = 1, scale: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Micro-batches of 1 to 12 rows of a linear 3-class problem (features scaled by ``scale``)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(12, 3))
    out = []
    for _ in range(steps):
        x = rng.normal(size=(int(rng.integers(1, 13)), 12)).astype(np.float32)
        out.append((x * scale, (x @ w).argmax(1)))
    return out


def test_bucket_is_the_next_power_of_two():
    assert [bucket_of(n) for n in (1, 2, 3, 4, 5, 10, 16, 17, 128, 129)] == [1, 2, 4, 4, 8, 16, 16, 32, 128, 256]
    with pytest.raises(ValueError, match="at least one row"):
        bucket_of(0)


def test_methods_cover_the_defaults():
    assert {"er", "der++", "er+ewc", "er+mas"} <= set(FIXED)


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("method", FIXED)
def test_padded_steps_give_the_unpadded_parameters(method, standardize):
    """Rows padded up to the bucket carry weight 0 everywhere: 300 steps of sizes 1-12, padded to 1-16 rows,
    end at the parameters, buffer and statistics of the same steps run at their own sizes."""
    padded, exact = _learner(method, standardize=standardize), _learner(method, standardize=standardize)
    exact._fixed_step().pad = False
    for i, (x, y) in enumerate(_stream(300, scale=30.0 if standardize else 1.0)):
        a, b = padded.learn(x, y), exact.learn(x, y)
        assert a.loss == pytest.approx(b.loss, rel=1e-4, abs=1e-6) and a.new_correct == b.new_correct
        if i == 100:  # importance methods pull from here on
            padded.consolidate()
            exact.consolidate()
    assert padded.step_path == exact.step_path == "fixed"
    assert padded.step == exact.step == 300 and padded.buffer.seen == exact.buffer.seen
    torch.testing.assert_close(padded._flat_param, exact._flat_param, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(padded.buffer.tensors_by_field().items(), exact.buffer.tensors_by_field().values()):
        if name in ("x", "y"):
            assert torch.equal(a, b), name  # same slots, same rows: copied, not computed
        else:
            torch.testing.assert_close(a.float(), b.float(), rtol=1e-3, atol=1e-3)
    if standardize:
        for a, b in zip(padded.standardizer.buffers(), exact.standardizer.buffers()):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_first_step_is_the_eager_step():
    """With an empty buffer nothing is replayed by either step: the first update is the same."""
    fixed, eager = _learner("er"), _learner("er", step_mode="eager")
    x, y = _stream(1)[0]
    a, b = fixed.learn(x, y), eager.learn(x, y)
    assert a.loss == pytest.approx(b.loss, rel=1e-6) and a.new_correct == b.new_correct and a.lag == 0
    torch.testing.assert_close(fixed._flat_param, eager._flat_param, rtol=0, atol=1e-7)
    assert fixed.buffer.seen == eager.buffer.seen == len(y)
    torch.testing.assert_close(fixed.buffer.x[: len(y)], eager.buffer.x[: len(y)])


@pytest.mark.parametrize("method", ["er", "der++", "er+mas"])
def test_fixed_step_learns_as_well_as_the_eager_step(method):
    """Same stream, same bytes: prequential accuracy within 3 points of the eager step's (the replay draws differ)."""
    stream = _stream(600, seed=3)
    accuracy = {}
    for mode in ("fixed", "eager"):
        learner = _learner(method, step_mode=mode)
        for x, y in stream:
            learner.learn(x, y)
        accuracy[mode] = learner.prequential_accuracy
    assert accuracy["eager"] > 0.8
    assert abs(accuracy["fixed"] - accuracy["eager"]) < 0.03, accuracy


def test_reservoir_insert_is_algorithm_r():
    """Slots as Vitter's algorithm R gives them for the same uniforms, a later row winning a shared slot; rows
    not learned take no slot and do not count."""
    learner = _learner("er")
    fixed = learner._fixed_step()
    buf = learner.buffer
    cap = buf.capacity
    start = 3 * cap  # full: most rows are rejected, and with 16 rows some share a slot
    fixed.seen.fill_(start)
    before = buf.x.clone()
    rows = 16
    x = torch.arange(rows * 12, dtype=torch.float32).reshape(rows, 12) + 1000
    y = torch.arange(rows) % 3
    learned = torch.ones(rows, dtype=torch.bool)
    learned[[2, 7]] = False
    for trial in range(20):
        state = learner.generator.get_state()
        u = torch.rand(rows, generator=learner.generator, dtype=torch.float64).tolist()
        learner.generator.set_state(state)
        expected = before.clone()
        n = int(fixed.seen)
        for i in range(rows):
            if not learned[i]:
                continue
            n += 1
            slot = n - 1 if n <= cap else int(u[i] * n)
            if slot < cap:
                expected[slot] = x[i]
        fixed._insert(x, y, {}, learned, rows)
        assert torch.equal(buf.x, expected), trial
        buf.x.copy_(before)
    # While the buffer fills, learned rows take the next free slots in order.
    fixed.seen.fill_(0)
    fixed._insert(x, y, {}, learned, rows)
    kept = x[learned]
    assert torch.equal(buf.x[: kept.shape[0]], kept)
    assert torch.equal(buf.y[: kept.shape[0]], y[learned])


def test_reservoir_insert_leaves_an_equal_share_of_the_stream():
    """Over a long stream every position is kept with probability capacity / n (algorithm R's invariant)."""
    learner = _learner("er", max_buffer_samples=20)
    fixed = learner._fixed_step()
    counts = np.zeros(400)
    for trial in range(150):
        learner.buffer.x.zero_()
        fixed.seen.zero_()
        for start in range(0, 400, 8):
            x = torch.arange(start, start + 8, dtype=torch.float32).unsqueeze(1).expand(8, 12).contiguous()
            fixed._insert(x, torch.zeros(8, dtype=torch.int64), {}, torch.ones(8, dtype=torch.bool), 8)
            fixed.seen.add_(8)
        counts[learner.buffer.x[:, 0].long().numpy()] += 1
    share = counts / 150
    # Expected 20 / 400 = 0.05 for every position; early, middle and late thirds alike.
    thirds = [share[:133].mean(), share[133:266].mean(), share[266:].mean()]
    assert all(abs(t - 0.05) < 0.01 for t in thirds), thirds


@pytest.mark.parametrize("standardize", [False, True])
def test_a_non_finite_step_changes_nothing_and_the_next_runs_eagerly(standardize):
    learner = _learner("er+mas", standardize=standardize)
    stream = _stream(40)
    for x, y in stream[:30]:
        learner.learn(x, y)
    learner.consolidate()
    params = learner._flat_param.clone()
    buffer = [t.clone() for t in learner.buffer.tensors()]
    stats = [b.clone() for b in learner.standardizer.buffers()] if standardize else []
    seen, step = learner.buffer.seen, learner.step
    x, y = stream[30]
    bad = x.copy()
    bad[:, 3] = np.nan  # every row (one bad row alone is left out and the others learned)
    out = learner.learn(bad, y)
    assert out.skipped and learner.skipped_steps == 1 and learner.step == step
    assert torch.equal(learner._flat_param, params)
    assert all(torch.equal(a, b) for a, b in zip(learner.buffer.tensors(), buffer))
    assert learner.buffer.seen == seen
    if standardize:
        assert all(torch.equal(a, b) for a, b in zip(learner.standardizer.buffers(), stats))
    fixed = learner._fixed_step()
    assert fixed.eager_next
    learner.learn(x, y)  # eager, and back to the fixed step after it
    assert not fixed.eager_next and learner.step == step + 1
    calls = fixed.calls
    learner.learn(*stream[31])
    assert fixed.calls == calls + 1 and learner.step == step + 2
    assert torch.isfinite(learner._flat_param).all()


def test_huge_inputs_never_make_the_weights_non_finite():
    learner = _learner("der++")
    for x, y in _stream(30):
        learner.learn(x, y)
    for scale in (1e6, 1e18, 1e30, 3e38):
        x, y = _stream(1, seed=int(np.log10(scale)))[0]
        learner.learn(x * np.float32(scale), y)
        assert torch.isfinite(learner._flat_param).all(), scale
    for x, y in _stream(20, seed=9):
        assert not learner.learn(x, y).skipped or learner.step_path == "fixed"
    assert torch.isfinite(learner._flat_param).all()


@pytest.mark.parametrize("case, reason", [
    ({"optimizer": "adam"}, "only plain SGD"),
    ({"momentum": 0.9}, "only plain SGD"),
    ({"method": "a-gem"}, "works on the host inside the step (before_update)"),
    ({"method": "er+si"}, "works on the host inside the step"),
    ({"class_balanced": True}, "class-balanced"),
    ({"predict": "ncm"}, "ncm"),
])
def test_unsupported_configurations_fall_back_to_eager_once_with_the_reason(case, reason, caplog):
    case = dict(case)
    learner = _learner(case.pop("method", "er"), **case)
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        for x, y in _stream(5):
            learner.learn(x, y)
    assert learner.step_path == "eager" and learner.step == 5
    records = [r for r in caplog.records if "fixed-shape step is off" in r.getMessage()]
    assert len(records) == 1 and reason in records[0].getMessage()


def test_batch_norm_models_fall_back():
    model = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    learner = OnlineLearner(model, 60_000, method="er", input_dim=12, step_mode="fixed")
    assert "BatchNorm1d" in unsupported_reason(learner)
    x, y = _stream(1)[0]
    learner.learn(np.concatenate([x, x]), np.concatenate([y, y]))
    assert learner.step_path == "eager"


def test_static_inputs_are_reported_as_step_workspace():
    learner = _learner("er")
    before = learner.memory_report()["step_workspace_bytes"]
    learner.learn(*_stream(1)[0])
    learner.learn(np.zeros((9, 12), np.float32), np.zeros(9, np.int64))  # bucket 16: 16 x 12 floats + 16 labels
    grown = learner.memory_report()["step_workspace_bytes"] - before
    assert grown >= 16 * 12 * 4 + 16 * 8


def test_auto_is_eager_on_the_cpu():
    learner = _learner("er", step_mode="auto")
    assert learner.step_path == "eager"


@pytest.mark.parametrize("method", ["der++", "er+ewc"])
def test_save_and_load_resume_exactly(method, tmp_path):
    stream = _stream(120)
    a = _learner(method)
    for x, y in stream[:60]:
        a.learn(x, y)
    a.consolidate()
    a.save(tmp_path / "state.pt")
    b = OnlineLearner.load(tmp_path / "state.pt", device="cpu")
    assert b.step_path == "fixed"
    for x, y in stream[60:]:
        sa, sb = a.learn(x, y), b.learn(x, y)
        assert sa.loss == sb.loss
    assert torch.equal(a._flat_param, b._flat_param)
    assert a.buffer.seen == b.buffer.seen and a.step == b.step


def test_a_changed_learning_rate_is_used():
    learner = _learner("er")
    stream = _stream(20)
    for x, y in stream[:10]:
        learner.learn(x, y)
    learner.optimizer.param_groups[0]["lr"] = 0.0
    before = learner._flat_param.clone()
    for x, y in stream[10:]:
        learner.learn(x, y)
    assert torch.equal(learner._flat_param, before)


def test_compact_importance_state_pulls_as_the_eager_step():
    """bfloat16 omega (the compact state) takes the two-pass pull in float32, as the eager step does: one step from
    the same state moves the weights alike."""
    fixed, eager = (_learner("er+ewc", state_dtype="bfloat16", importance_lambda=1.0, step_mode=m)
                    for m in ("fixed", "eager"))
    x, y = _stream(1)[0]
    for learner in (fixed, eager):
        ewc = learner.get_method("ewc")
        ewc.omega_flat.copy_(torch.rand(ewc.omega_flat.shape, generator=torch.Generator().manual_seed(0)))
        ewc.anchor_flat.add_(0.5)
        ewc.consolidations = 1
        learner.learn(x, y)
    torch.testing.assert_close(fixed._flat_param, eager._flat_param, rtol=0, atol=1e-6)


def test_importance_is_estimated_off_the_step():
    learner = _learner("er+ewc", importance_every=5)
    flags = [learner.learn(x, y).importance_updated for x, y in _stream(20)]
    assert flags == [(i + 1) % 5 == 0 for i in range(20)]
    assert learner.get_method("ewc").updates == 4


def test_the_penalty_is_reported_after_a_consolidation():
    learner = _learner("er+ewc", importance_lambda=1.0)
    stream = _stream(40)
    for x, y in stream[:20]:
        learner.learn(x, y)
    learner.consolidate()
    for x, y in stream[20:30]:
        stats = learner.learn(x, y)
    ewc = learner.get_method("ewc")
    assert stats.penalty > 0 and stats.penalty == pytest.approx(ewc.last_penalty)


def test_the_deferred_estimate_is_the_estimate_and_leaves_the_mean_on_a_non_finite_one():
    eager, deferred = _learner("er+ewc", step_mode="eager"), _learner("er+ewc", step_mode="eager")
    x, y = torch.randn(10, 12), torch.randint(0, 3, (10,))
    for _ in range(3):
        eager.get_method("ewc").update(x, y)
        deferred.get_method("ewc").update_deferred(x, y)
    a, b = eager.get_method("ewc"), deferred.get_method("ewc")
    for u, v in zip(a.current, b.current):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-7)
    before = [c.clone() for c in b.current]
    b.update_deferred(torch.full((10, 12), 3e38), y)
    assert all(torch.equal(c, d) for c, d in zip(b.current, before))
    assert b.report()["rejected"] == 1 and b.current_count == 4


# --- the capture path, with torch.cuda's graph API replaced by a stand-in that runs the step on the CPU ----------
class _FakeCuda:
    """Just enough of torch.cuda for FixedStep's capture path: a 'graph' whose replay runs the recorded step
    eagerly. ``broken=True`` replays without advancing the random state, the failure the capture check exists for."""

    def __init__(self, broken: bool = False):
        self.broken = broken
        self.replays = 0
        self.fixed = None

    def install(self, monkeypatch, fixed):
        self.fixed = fixed
        fake = self

        class Graph:
            def register_generator_state(self, generator):
                self.generator = generator

            def replay(self):
                fake.replays += 1
                state = self.generator.get_state()
                fake.fixed._core(*self.shape)
                if fake.broken:
                    self.generator.set_state(state)

        class GraphContext:
            def __init__(self, graph):
                self.graph = graph

            def __enter__(self):
                self.state = self.graph.generator.get_state()
                return self

            def __exit__(self, *exc):  # a capture records; it does not run, nor consume random numbers
                self.graph.generator.set_state(self.state)
                return False

        class Stream:
            def wait_stream(self, other):
                pass

        class Event:
            def record(self):
                pass

            def synchronize(self):
                pass

        def make_graph():
            graph = Graph()
            graph.shape = None
            return graph

        def graph_context(graph):
            graph.shape = fake.current_shape
            return GraphContext(graph)

        monkeypatch.setattr(torch.cuda, "CUDAGraph", make_graph)
        monkeypatch.setattr(torch.cuda, "graph", graph_context)
        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda: Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "Event", Event)
        original_record = fixed._record

        def record(rows, bucket):
            fake.current_shape = (rows, bucket)
            return original_record(rows, bucket)

        monkeypatch.setattr(fixed, "_record", record)


def _captured(monkeypatch, broken=False, **options):
    from edge_cl.fixed_step import FixedStep

    learner = _learner("er+ewc", **options)
    learner._fixed, learner._fixed_decided = FixedStep(learner, capture=True), True
    fake = _FakeCuda(broken)
    fake.install(monkeypatch, learner._fixed)
    return learner, fake


def test_the_capture_path_learns_as_the_uncaptured_step_with_stats_one_step_late(monkeypatch):
    captured, fake = _captured(monkeypatch)
    plain = _learner("er+ewc")
    rng = np.random.default_rng(0)
    stream = [(rng.normal(size=(10, 12)).astype(np.float32), rng.integers(0, 3, 10)) for _ in range(60)]
    previous = None
    for i, (x, y) in enumerate(stream):  # one bucket: one capture, at the first call
        a, b = captured.learn(x, y), plain.learn(x, y)
        assert a.lag == 1
        if i == 0:  # nothing finished before it
            assert a.batch_size == 0 and a.new_correct == 0 and np.isnan(a.loss)
        else:  # the previous call's step
            assert (a.loss, a.new_correct, a.batch_size, a.step) == (previous.loss, previous.new_correct, 10, i)
        previous = b
    assert captured.step_path == "graph" and fake.replays > 60  # 60 steps plus the checks' replays
    assert captured.step == plain.step == 60  # reading the counter waits for the step in flight
    torch.testing.assert_close(captured._flat_param, plain._flat_param, rtol=0, atol=0)
    assert captured.buffer.seen == plain.buffer.seen
    assert captured.prequential_accuracy == plain.prequential_accuracy


def test_a_replay_that_does_not_advance_the_random_state_falls_back_to_eager(monkeypatch, caplog):
    captured, _ = _captured(monkeypatch, broken=True)
    stream = _stream(20)
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        for x, y in stream[:10]:
            captured.learn(x, y)
    assert captured.step_path == "eager" and captured.step == 10
    messages = [r.getMessage() for r in caplog.records if "CUDA-graph step is off" in r.getMessage()]
    assert len(messages) == 1 and "differs from the uncaptured one" in messages[0]
    params = captured._flat_param.clone()
    captured.learn(*stream[10])
    assert not torch.equal(captured._flat_param, params)  # still learning, eagerly


def test_exact_stats_report_each_call_its_own_step(monkeypatch):
    captured, _ = _captured(monkeypatch, exact_stats=True)
    captured._fixed.exact_stats = True
    plain = _learner("er+ewc")
    for x, y in _stream(30):
        a, b = captured.learn(x, y), plain.learn(x, y)
        assert a.lag == 0 and (a.loss, a.new_correct, a.batch_size) == (b.loss, b.new_correct, b.batch_size)


class _FixedRaiserSettings(methods.MethodSettings):
    raise_in: str = ""


class _FixedRaiser(methods.Method):
    """Runs on the fixed-shape step (its hooks are device work) and raises in ``raise_in`` once armed."""

    name = "fixed-raiser-test"
    uses_buffer = True
    Settings = _FixedRaiserSettings

    def __init__(self, ctx, settings):
        super().__init__(ctx, settings)
        self.armed = False

    def _maybe(self, hook):
        if self.armed and self.settings.raise_in == hook:
            raise RuntimeError(f"planted failure in {hook}")

    def sample_fields(self):
        return {"seen_at": methods.SampleField((1,))}

    def replay_draws(self):
        return [methods.Draw("fixed-raiser", 4, join_ce=True)]

    def loss(self, step):
        self._maybe("loss")
        return step.draws["fixed-raiser"].logits.square().mean() * 1e-3

    def sample_values(self, step):
        self._maybe("sample_values")
        return {"seen_at": step.logits.detach()[:, :1]}

    def consolidate(self):
        self._maybe("consolidate")


@pytest.fixture
def fixed_raiser():
    methods.register(_FixedRaiser)
    yield _FixedRaiser.name
    methods.unregister(_FixedRaiser.name)


def _arm(learner, hook, monkeypatch):
    """Make the next call fail in ``hook``: the raiser's own hooks, or EWC's work after the step."""
    if hook in ("update_deferred", "penalty_value"):
        ewc = learner.get_method("ewc")

        def fail(*args):
            raise RuntimeError(f"planted failure in {hook}")

        monkeypatch.setattr(ewc, hook, fail)
        monkeypatch.setattr(ewc, "penalty_due", lambda steps: True)  # refreshed every few steps: make it now
    else:
        learner.get_method("fixed-raiser-test").armed = True
    if hook == "consolidate":
        monkeypatch.setattr(learner.trigger, "observe", lambda loss: True)


# Captured steps run loss and sample_values only while recording (a failure there falls back to the eager step):
# per call, the hooks that can fail are those after the graph.
_PER_CALL = {"uncaptured": ["loss", "sample_values", "consolidate", "update_deferred", "penalty_value"],
             "captured": ["consolidate", "update_deferred", "penalty_value"]}


@pytest.mark.parametrize("path, hook", [(p, h) for p, hooks in _PER_CALL.items() for h in hooks])
def test_the_fixed_step_is_a_transaction(fixed_raiser, hook, path, monkeypatch):
    """Issue #28 item 3 on the fixed-shape step: whatever a method raises, in whichever hook this step runs, the
    learner's whole state (weights, buffer rows, method state, random state, counters) is as it was, the error
    names the method and the hook, and learning goes on."""
    import copy

    from edge_cl.fixed_step import FixedStep
    from edge_cl.transaction import MethodError
    from tests.test_transaction import _equal

    # A full buffer of 20 samples after ~40 seen: a failing step of 12 rows overwrites stored rows (P > 0.999).
    learner = _learner(f"{fixed_raiser}+ewc", importance_every=1, raise_in=hook, max_buffer_samples=20)
    if hook == "consolidate":
        from edge_cl.triggers import make_trigger

        learner.trigger = make_trigger("plateau")
    if path == "captured":
        learner._fixed, learner._fixed_decided = FixedStep(learner, capture=True, exact_stats=True), True
        _FakeCuda().install(monkeypatch, learner._fixed)
    stream = _stream(40)
    for i, (x, y) in enumerate(stream[:6]):
        learner.learn(x, y)
        if i == 2:
            learner.consolidate()  # EWC's penalty in force: penalty_value runs
    assert learner.buffer.seen > 20
    failing = (np.concatenate([x for x, _ in stream[30:]])[:12], np.concatenate([y for _, y in stream[30:]])[:12])
    assert learner.step_path == ("graph" if path == "captured" else "fixed")
    before = copy.deepcopy(learner.state_dict())
    owner = "ewc" if hook in ("update_deferred", "penalty_value") else fixed_raiser
    with pytest.MonkeyPatch.context() as armed:
        _arm(learner, hook, armed)
        with pytest.raises(MethodError, match=rf"method '{owner}' raised in {hook}: RuntimeError: planted failure"):
            learner.learn(*failing)
        _equal(learner.state_dict(), before, "state")
    learner.get_method(fixed_raiser).armed = False
    stats = learner.learn(*failing)
    assert not stats.skipped and learner.step == before["counters"]["step"] + 1


def test_a_failed_fixed_step_then_the_same_steps_gives_the_same_weights(fixed_raiser):
    def run(fail: bool) -> OnlineLearner:
        learner = _learner(fixed_raiser, raise_in="sample_values")
        for i, (x, y) in enumerate(_stream(60)):
            if fail and i == 25:
                learner.get_method(fixed_raiser).armed = True
                with pytest.raises(Exception, match="planted failure"):
                    learner.learn(x, y)
                learner.get_method(fixed_raiser).armed = False
            learner.learn(x, y)
        assert learner.step_path == "fixed"
        return learner

    a, b = run(True), run(False)
    assert torch.equal(a._flat_param, b._flat_param)
    for name, t in a.buffer.tensors_by_field().items():
        assert torch.equal(t, b.buffer.tensors_by_field()[name]), name
