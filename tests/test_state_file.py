"""Save / load: pickle-free, atomic, and an exact resume."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner, models
from edge_cl.state_file import atomic_save, safe_load


def _stream(seed: int, steps: int, dim: int = 12, classes: int = 4):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield rng.standard_normal((8, dim)).astype(np.float32), rng.integers(0, classes, 8)


CONFIGS = [
    {"importance": "mas", "importance_every": 3, "trigger": "plateau", "trigger_params": {"window": 10}},
    {"importance": "ewc", "importance_every": 3, "trigger": "adwin", "optimizer": "adam", "lr": 0.01,
     "storage": "float16"},
    # float32: with float16 (twice the samples) the class-balanced buffer fills before the save, and a resumed
    # class-balanced buffer evicts differently (test_class_balanced_resume_after_the_buffer_filled below).
    {"importance": None, "trigger": "page-hinkley", "class_balanced": True, "momentum": 0.9, "storage": "float32"},
]


def _whole_and_resumed(make, data, tmp_path, full_at_save: bool = False) -> tuple[OnlineLearner, OnlineLearner]:
    """One learner over all of ``data``; another saved after 200 batches, loaded, and given the rest."""
    whole = make()
    for x, y in data:
        whole.learn(x, y)
    first = make()
    for x, y in data[:200]:
        first.learn(x, y)
    if full_at_save:
        assert len(first.buffer) == first.buffer.capacity  # full: evictions follow
    first.save(tmp_path / "state.pt")
    del first
    resumed = OnlineLearner.load(tmp_path / "state.pt", device="cpu")
    for x, y in data[200:]:
        resumed.learn(x, y)
    return whole, resumed


@pytest.mark.parametrize("config", CONFIGS)
def test_resume_gives_bit_identical_parameters(tmp_path, config):
    def make():
        torch.manual_seed(0)
        return OnlineLearner(models.mlp(12, [16], 4), 60_000, replay_batch=6, seed=7,
                             device="cpu", **({"lr": 0.1} | config))

    whole, resumed = _whole_and_resumed(make, list(_stream(1, 300)), tmp_path)

    assert resumed.step == whole.step == 300
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert torch.equal(whole.buffer.x, resumed.buffer.x)
    assert whole.consolidations == resumed.consolidations
    if whole.importance is not None:
        for a, b in zip(whole.importance.tensors(), resumed.importance.tensors()):
            assert torch.equal(a, b)


def test_consolidations_happen_in_the_resume_test_stream():
    """Guards the test above: its streams really exercise the trigger and the importance state."""
    torch.manual_seed(0)
    learner = OnlineLearner(models.mlp(12, [16], 4), 60_000, replay_batch=6, seed=7, device="cpu",
                            **CONFIGS[0])
    for x, y in _stream(1, 300):
        learner.learn(x, y)
    assert learner.consolidations >= 1


def test_state_file_loads_with_weights_only_and_holds_no_pickled_objects(tmp_path):
    learner = OnlineLearner(models.cnn1d(3, 10, 2), 200_000, device="cpu")
    learner.learn(np.random.rand(4, 30).astype(np.float32), [0, 1, 0, 1])
    learner.save(tmp_path / "s.pt", extra={"spool_position": 41})
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["format"] == "edge_cl.learner" and state["model_spec"]["type"] == "cnn1d"
    loaded = OnlineLearner.load(tmp_path / "s.pt")
    assert loaded.extra == {"spool_position": 41}
    assert isinstance(loaded.model, type(learner.model))


def test_load_refuses_foreign_and_missing_files(tmp_path):
    torch.save({"hello": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an edge_cl learner state"):
        OnlineLearner.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no learner state"):
        OnlineLearner.load(tmp_path / "missing.pt")


def test_model_without_spec_needs_the_model_on_load(tmp_path):
    learner = OnlineLearner(torch.nn.Linear(3, 2), 100_000, input_dim=3, device="cpu")
    learner.save(tmp_path / "s.pt")
    with pytest.raises(ValueError, match="pass model="):
        OnlineLearner.load(tmp_path / "s.pt")
    assert OnlineLearner.load(tmp_path / "s.pt", model=torch.nn.Linear(3, 2)).num_classes == 2


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "s.pt"
    atomic_save({"v": torch.ones(2)}, target)

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": torch.zeros(2)}, target)
    monkeypatch.undo()
    assert torch.equal(safe_load(target)["v"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temp files left behind


def test_unreadable_files_raise_value_error_naming_the_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match="junk.pt is not a readable edge_cl state file"):
        OnlineLearner.load(tmp_path / "junk.pt")
    learner = OnlineLearner(models.mlp(4, [4], 2), 100_000, device="cpu")
    learner.save(tmp_path / "s.pt")
    data = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pt"):
        OnlineLearner.load(tmp_path / "cut.pt")


def test_a_state_saved_before_methods_were_plugins_still_loads():
    """Devices in the field hold version-1 checkpoints (one "importance" entry, no "methods"): the upgrade
    must resume them. The fixture was saved by edge_cl at commit 16689ac (er + mas, 60 steps)."""
    path = Path(__file__).with_name("fixtures") / "learner_state_v1_er_mas.pt"
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == 1 and "methods" not in raw and raw["importance"]["name"] == "mas"
    learner = OnlineLearner.load(path, device="cpu")
    assert learner.method == "er+mas" and learner.step == 60 and len(learner.buffer) == 240
    mas = learner.get_method("mas")
    # The file holds omega in its own units (no omega_scale); the learner keeps it in its pull's units.
    assert "omega_scale" not in raw["importance"] and mas.scale != 1.0
    for mine, saved in zip(mas.importance_values(), raw["importance"]["omega"], strict=True):
        torch.testing.assert_close(mine, saved)
    assert mas.consolidations == raw["importance"]["consolidations"] == 1
    assert learner.extra["spool_position"] == 240
    stats = learner.learn(np.zeros((4, 6), np.float32), np.array([0, 1, 2, 0]))
    assert not stats.skipped and learner.step == 61


def test_class_balanced_resume_after_the_buffer_filled(tmp_path):
    def make():
        torch.manual_seed(0)
        return OnlineLearner(models.mlp(12, [16], 4), 60_000, replay_batch=6, seed=7, device="cpu",
                             class_balanced=True, storage="float16", max_buffer_samples=400)

    data = list(_stream(1, 300))
    # Classes first seen in descending order, so first-seen order and label order (a loaded buffer's) differ.
    data[0] = (data[0][0], np.array([3, 3, 2, 2, 1, 1, 0, 0]))
    whole, resumed = _whole_and_resumed(make, data, tmp_path, full_at_save=True)
    assert torch.equal(whole.buffer.x, resumed.buffer.x)
