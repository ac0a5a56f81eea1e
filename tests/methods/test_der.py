"""DER and DER++: retention over fine-tuning, the stored logits, their bytes in the budget."""

import pytest
import torch

from edge_cl import methods, models
from edge_cl.learner import OnlineLearner
from tests.methods.retention import two_tasks

# The learner's input defaults (standardize=None, float16 storage) are not what these tests are about.
INPUTS = {"standardize": False, "storage": "float32"}


@pytest.mark.parametrize("method", ["der", "der++"])
@pytest.mark.parametrize("class_il", [False, True])
def test_keeps_task_one_above_fine_tuning(method, class_il):
    sgd0, _, _ = two_tasks("sgd", class_il=class_il)
    old, new, _ = two_tasks(method, class_il=class_il)
    assert old >= sgd0 + 0.25, (old, sgd0)
    assert new >= 0.6


def test_two_draws_keep_task_one():
    sgd0, _, _ = two_tasks("sgd")
    old, new, learner = two_tasks("der++", der_shared_draw=False)
    assert [d.key for d in learner.get_method("der++").replay_draws()] == ["der", "der_ce"]
    assert old >= sgd0 + 0.25 and new >= 0.6


def _learner(method="der", **kw):
    torch.manual_seed(0)
    model = models.mlp(8, [16], 4)
    budget = OnlineLearner.required_bytes(models.mlp(8, [16], 4), buffer_samples=64, method=method, replay_batch=8, **(INPUTS | kw))
    return OnlineLearner(model, budget_bytes=budget, method=method, replay_batch=8, seed=0, trigger=None, **INPUTS,
                         device="cpu", **kw)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_stored_logits_are_those_of_the_inserting_step(dtype):
    learner = _learner(logits_dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    for i in range(12):  # the buffer (64) fills over the first 8 steps, then the reservoir replaces slots
        x = torch.randn(8, 8, generator=gen)
        y = torch.randint(0, 4, (8,), generator=gen)
        before = learner.buffer.values["logits"].clone()
        with torch.no_grad():
            expected = learner.model(x)  # the step's forward runs before its update
        learner.learn(x, y)
        stored = learner.buffer.values["logits"]
        changed = (stored != before).any(1).nonzero().flatten()
        if i < 8:
            assert changed.tolist() == list(range(8 * i, 8 * i + 8))
        for slot in changed.tolist():
            row = int((learner.buffer.x[slot] == x).all(1).nonzero().flatten()[0])
            tol = 1e-3 if dtype == "float16" else 1e-6
            torch.testing.assert_close(stored[slot].float(), expected[row], atol=tol, rtol=tol)
        assert stored.dtype == getattr(torch, dtype)


def test_logit_bytes_are_in_the_memory_report_and_cost_samples():
    half = _learner(logits_dtype="float16")
    report = half.memory_report()
    assert report["buffer_fields"]["logits"] == half.budget.buffer_capacity * 4 * 2
    assert report["buffer_field_bytes_per_sample"]["logits"] == 8
    full = _learner(logits_dtype="float32")
    assert full.memory_report()["buffer_field_bytes_per_sample"]["logits"] == 16
    # At one byte budget the logits take room from the samples: DER fits fewer than ER.
    budget = half.budget.budget_bytes
    er = OnlineLearner(models.mlp(8, [16], 4), budget_bytes=budget, method="er", replay_batch=8, device="cpu",
                       **INPUTS)
    assert er.budget.buffer_capacity > half.budget.buffer_capacity


def test_combination_syntax():
    assert methods.parse("der+++ewc") == methods.parse("der++ + ewc") == ["der++", "ewc"]
    learner = _learner("der+++ewc")
    assert learner.method == "der+++ewc" and learner.get_method("ewc") is not None


def test_empty_buffer_adds_no_term():
    learner = _learner("der++")
    stats = learner.learn(torch.randn(8, 8), torch.randint(0, 4, (8,)))
    assert not stats.skipped and stats.replay_size == 0


def test_default_method_is_der_plus_plus_and_no_setting_changes_it():
    def method(**kw):
        return OnlineLearner(models.mlp(8, [16], 4), budget_bytes=500_000, device="cpu", **kw).method

    assert method() == "der++"
    # The older keyword names a method outright; that is not a setting changing one.
    assert method(importance="mas") == "er+mas"
    assert method(importance=None) == "er"
    # A setting the default does not declare is an error naming the methods that do, not a switch to er+mas.
    with pytest.raises(ValueError, match=r"importance_lambda is a setting of methods ewc, mas.*method='der\+\+\+ewc'"):
        method(importance_lambda=1e-4)
    # replay_batch=0 no longer turns der++ into mas.
    with pytest.raises(ValueError, match=r"replay_batch=0 turns replay off, but method 'der\+\+' replays"):
        method(replay_batch=0)
    assert method(method="er+mas", importance_lambda=1e-4) == "er+mas"
    assert method(method="mas", replay_batch=0) == "mas"
