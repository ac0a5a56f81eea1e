"""The CUDA path: runs where a GPU is present, skipped with the reason elsewhere (see conftest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner, models

pytestmark = pytest.mark.cuda


def test_auto_picks_cuda_and_state_lives_there():
    learner = OnlineLearner(models.mlp(784, [100, 100], 10), 3_000_000, importance="mas", device="auto")
    assert learner.device.type == "cuda"
    x = np.random.rand(10, 784).astype(np.float32)
    for _ in range(20):
        learner.learn(x, np.arange(10))
    learner.consolidate()
    learner.learn(x, np.arange(10))
    tensors = [t for part in learner.owned_tensors().values() for t in part]
    assert tensors and all(t.device.type == "cuda" for t in tensors)
    assert learner.memory_report()["used_bytes"] <= 3_000_000
    assert learner.predict(x).shape == (10,)


@pytest.mark.parametrize("importance", ["ewc", "mas"])
def test_cuda_and_cpu_importance_agree(importance):
    torch.manual_seed(0)
    model = models.mlp(20, [16], 4)
    cpu = OnlineLearner(model, 500_000, importance=importance, device="cpu").importance
    x, y = torch.randn(8, 20), torch.randint(0, 4, (8,))
    expected = cpu.estimate(x, y)
    gpu = OnlineLearner(models.build(model.spec), 500_000, importance=importance, device="cuda")
    gpu.model.load_state_dict(model.state_dict())
    got = gpu.importance.estimate(x.cuda(), y.cuda())
    for e, g in zip(expected, got):
        torch.testing.assert_close(g.cpu(), e, rtol=1e-4, atol=1e-6)


def test_cuda_resume_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    data = [(rng.random((8, 12), dtype=np.float32), rng.integers(0, 3, 8)) for _ in range(60)]

    def make():
        torch.manual_seed(0)
        return OnlineLearner(models.mlp(12, [16], 3), 200_000, importance="ewc", device="cuda", seed=3)

    whole = make()
    for x, y in data:
        whole.learn(x, y)
    first = make()
    for x, y in data[:30]:
        first.learn(x, y)
    first.save(tmp_path / "s.pt")
    resumed = OnlineLearner.load(tmp_path / "s.pt", device="cuda")
    for x, y in data[30:]:
        resumed.learn(x, y)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_cuda_state_loads_on_cpu(tmp_path):
    learner = OnlineLearner(models.mlp(12, [16], 3), 200_000, importance="mas", device="cuda")
    learner.learn(np.random.rand(8, 12).astype(np.float32), np.arange(8) % 3)
    learner.save(tmp_path / "s.pt")
    cpu = OnlineLearner.load(tmp_path / "s.pt", device="cpu")
    assert cpu.device.type == "cpu" and cpu.step == 1
    cpu.learn(np.random.rand(8, 12).astype(np.float32), np.arange(8) % 3)
