"""The contract every registered method keeps, run over ``edge_cl.methods.available()`` (plus combinations
and the "Writing a method" example of docs/writing-a-method.md), so a new method is tested without new tests:
save / load / resume bit-identical, every owned byte counted and within the budget, seeding, inputs not
mutated, a non-finite loss changing nothing, CUDA agreeing with the CPU."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner, methods, models
from tests.oracles import assert_same_state, owned_bytes
from tests.streams import permuted_prototypes

README_EXAMPLE = "confidence-replay"
CASES = [*methods.available(), "er+ewc", "er+mas", "der+++contexts", README_EXAMPLE]
DIM, CLASSES, BATCH = 12, 4, 8


def readme_example_source() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "writing-a-method.md").read_text()
    section = text.split("# Writing a method", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/writing-a-method.md has no python example"
    return match.group(1)


@pytest.fixture(params=CASES)
def method(request: pytest.FixtureRequest) -> Iterator[str]:
    """A method name; the README example is registered for the test and removed after it."""
    if request.param != README_EXAMPLE:
        yield request.param
        return
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(readme_example_source(), "docs/writing-a-method.md", "exec"), namespace)  # noqa: S102 - our docs
    try:
        yield README_EXAMPLE
    finally:
        methods.unregister(README_EXAMPLE)


def make(method: str, seed: int = 0, device: str = "cpu", **kw: object) -> OnlineLearner:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.mlp(DIM, [16], CLASSES)
    options = {"replay_batch": 8, "trigger_params": {"window": 5}, "lr": 0.05, "importance_every": 2} | kw
    declared = {k for n in methods.parse(method) for k in methods.get(n).Settings.model_fields}
    # Importance settings go only to combinations with an importance method: a setting never changes a method.
    options = {k: v for k, v in options.items() if not k.startswith("importance_") or k in declared}
    budget = OnlineLearner.required_bytes(model, buffer_samples=64, method=method, **options) + 1000
    return OnlineLearner(model, budget_bytes=budget, method=method, seed=seed, device=device, **options)


def stream(seed: int, steps: int, switch: int = 60) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    draw = permuted_prototypes(seed, dim=DIM, classes=CLASSES, noise=0.5)
    for i in range(steps):
        yield draw(BATCH, 0 if i < switch else 1)


# Finite inputs at float32's edge, alternating in sign: their loss can be finite while their gradients overflow.
HUGE = np.full((BATCH, DIM), 3e38, np.float32) * np.where(np.arange(DIM) % 2, 1, -1).astype(np.float32)


def learn_and_check_skip(learner: OnlineLearner, x: np.ndarray, y: np.ndarray) -> bool:
    """Learn one batch; when the step is skipped, assert it changed nothing but the skip counter (+1)."""
    before = copy.deepcopy(learner.state_dict())
    skipped = learner.learn(x, y).skipped
    if skipped:
        after = learner.state_dict()
        assert after["counters"].pop("skipped_steps") == before["counters"].pop("skipped_steps") + 1
        assert_same_state(before, after)
    return skipped


def test_every_method_documents_its_settings(method):
    for name in methods.parse(method):
        cls = methods.get(name)
        assert cls.__doc__ and cls.__doc__.strip(), f"{name} has no docstring"
        for key, field in cls.Settings.model_fields.items():
            assert field.description, f"{name}.{key} has no description"


def test_resume_is_bit_identical(method, tmp_path):
    data = list(stream(1, 250))
    a = make(method)
    for x, y in data[:150]:
        a.learn(x, y)
    a.save(tmp_path / "state.pt")
    b = OnlineLearner.load(tmp_path / "state.pt", model=models.mlp(DIM, [16], CLASSES), device="cpu")
    for x, y in data[150:]:
        a.learn(x, y)
        b.learn(x, y)
    assert b.method == a.method and a.step == b.step == 250
    assert_same_state(a.state_dict(), b.state_dict())


def test_owned_bytes_are_counted_and_within_budget(method):
    learner = make(method)
    report = learner.memory_report()
    for name in methods.parse(method):
        assert name in report["parts"], f"no budget part for {name}"
        owned = sum(t.nbytes for t in learner.get_method(name).tensors())
        assert report["parts"][name] == owned
    for i, (x, y) in enumerate(stream(2, 300)):
        learner.learn(x, y)
        if i % 25 == 0 or i == 299:
            found = owned_bytes(learner)
            report = learner.memory_report()
            assert found == report["used_bytes"] <= report["budget_bytes"], (i, found, report["parts"])
    assert sum(report["buffer_fields"].values()) == report["buffer_bytes"]
    assert report["buffer_bytes"] == report["buffer_capacity"] * report["bytes_per_sample"]


def test_same_seed_gives_the_same_parameters(method):
    runs = []
    for _ in range(2):
        learner = make(method, seed=5)
        for x, y in stream(3, 120):
            learner.learn(x, y)
        runs.append(learner.state_dict())
    assert_same_state(runs[0], runs[1])


def test_inputs_are_not_mutated(method):
    learner = make(method)
    for x, y in stream(4, 40):
        x0, y0 = x.copy(), y.copy()
        learner.learn(x, y)
        learner.predict(x)
        learner.observe(x)
        assert np.array_equal(x, x0) and np.array_equal(y, y0)
    tx, ty = torch.from_numpy(x0.copy()), torch.from_numpy(y0.copy())
    learner.learn(tx, ty)
    assert torch.equal(tx, torch.from_numpy(x0)) and torch.equal(ty, torch.from_numpy(y0))


def test_non_finite_loss_changes_nothing(method):
    learner = make(method)
    for x, y in stream(5, 80):
        learner.learn(x, y)
    bad, y = next(stream(6, 1))
    bad[:, 2] = np.nan  # every row (one bad row alone is left out and the others learned)
    assert learn_and_check_skip(learner, bad, y)
    # ... and the next finite step proceeds exactly as if the bad one never came.
    twin = make(method)
    for x, y in stream(5, 80):
        twin.learn(x, y)
    x, y = next(stream(7, 1))
    learner.learn(x, y)
    twin.learn(x, y)
    assert torch.equal(torch.cat([p.flatten() for p in learner.model.parameters()]),
                       torch.cat([p.flatten() for p in twin.model.parameters()]))


def test_overflowing_gradients_change_nothing(method):
    """Huge finite inputs give a finite loss whose gradients overflow: the step is skipped, nothing changes. (Raw
    inputs: the default standardiser would clip them to 5 and learn them, see the standardised case below.)"""
    learner = make(method, standardize=False)
    for x, y in stream(5, 80):
        learner.learn(x, y)
    _, y = next(stream(6, 1))
    assert learn_and_check_skip(learner, HUGE, y), "a step on overflowing gradients was taken"
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


def test_no_finite_input_stops_learning(method):
    """A burst of finite inputs of every magnitude up to float32's largest (what a fuzzing client sends) leaves
    the parameters finite, and the learner goes back to learning normal data: poisoned buffer rows are
    replaced, non-finite importance estimates discarded, no step moves further than max_grad_norm."""
    learner = make(method)
    rng = np.random.default_rng(0)
    for _ in range(150):
        scale = 10.0 ** rng.uniform(-3, 38, size=(BATCH, 1))
        wild = (rng.standard_normal((BATCH, DIM)) * scale).clip(-3.4e38, 3.4e38).astype(np.float32)
        learner.learn(wild, rng.integers(0, CLASSES, BATCH))
        assert all(torch.isfinite(p).all() for p in learner.model.parameters())
    taken = [not learner.learn(x, y).skipped for x, y in stream(9, 100)]
    assert sum(taken) >= 80 and all(taken[-20:]), f"{sum(taken)} of 100 normal steps taken"


def test_certain_predictions_do_not_stop_learning(method):
    """Inputs the model classifies with float32 certainty, labelled as it predicts (a sensor stuck at a large
    reading, a client replaying what the model said): the loss gradients fall to subnormals, and no method may
    raise on them (EWC's normalised estimate once overflowed float32 there) or leave a non-finite weight."""
    learner = make(method, importance_every=1)
    for x, y in stream(5, 80):
        learner.learn(x, y)
    x, _ = next(stream(6, 1))
    for scale in np.logspace(0.5, 4, 36):  # walks the logits' gaps through the range where softmax saturates
        wild = (x * scale).astype(np.float32)
        learner.learn(wild, learner.predict(wild))
        assert all(torch.isfinite(p).all() for p in learner.model.parameters())
    taken = [not learner.learn(x, y).skipped for x, y in stream(9, 40)]
    assert all(taken[-20:]), f"{sum(taken)} of 40 normal steps taken"


def _importance_cases() -> list[str]:
    return [c for c in CASES if c != README_EXAMPLE
            and any(issubclass(methods.get(n), methods.ImportanceMethod) for n in methods.parse(c))]


@pytest.mark.parametrize("method", _importance_cases())
def test_float16_importance_state_stays_finite(method):
    """Importance kept in float16 (``state_dtype``, to leave the buffer more bytes) overflows at 65504: a path
    score over a tiny Fisher (RWalk), an estimate concentrated on few weights. A stored inf made omega, the
    penalty and then every weight NaN; compact state saturates instead, through normal and saturating inputs."""
    learner = make(method, importance_every=1, state_dtype="float16")
    for x, y in stream(5, 80):
        learner.learn(x, y)
    learner.consolidate()
    x, _ = next(stream(6, 1))
    for scale in np.logspace(0.5, 4, 36):
        wild = (x * scale).astype(np.float32)
        learner.learn(wild, learner.predict(wild))
    learner.consolidate()
    for x, y in stream(9, 40):
        learner.learn(x, y)
    learner.consolidate()
    for m in learner.methods:
        for t in m.tensors():
            assert torch.isfinite(t.float()).all(), f"{m.name}: a non-finite importance state entry"
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


def test_huge_inputs_leave_a_standardised_learner_finite(method):
    """With the input standardiser, huge finite inputs are either learned (standardised) or skipped with
    the statistics put back; either way the parameters stay finite and learning goes on."""
    learner = make(method, standardize=True)
    for x, y in stream(5, 40):
        learner.learn(x, y)
    _, y = next(stream(6, 1))
    learn_and_check_skip(learner, HUGE, y)  # learned (standardised) or skipped with nothing changed
    for x, y in stream(7, 20):
        assert not learner.learn(x, y).skipped
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False")
def test_cuda_agrees_with_cpu(method):
    cpu, gpu = make(method, device="cpu"), make(method, device="cuda")
    for x, y in stream(8, 60):
        cpu.learn(x, y)
        gpu.learn(x, y)
    for p, q in zip(cpu.model.parameters(), gpu.model.parameters(), strict=True):
        torch.testing.assert_close(p, q.cpu(), atol=1e-4, rtol=1e-3)
