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


# --- the CUDA-graph step (edge_cl.fixed_step) ------------------------------------------------------------------
def _graph_pair(method: str, **options):
    """Two learners from one seed on the GPU: the captured step, and the same fixed-shape step run uncaptured."""
    from edge_cl.fixed_step import FixedStep

    made = []
    for capture in (True, False):
        torch.manual_seed(0)
        learner = OnlineLearner(models.mlp(784, [100, 100], 10), 3_000_000, method=method, replay_batch=10,
                                lr=0.1, seed=0, device="cuda", trigger=None, exact_stats=True, **options)
        if not capture:
            learner._fixed, learner._fixed_decided = FixedStep(learner, capture=False), True
        made.append(learner)
    return made


@pytest.mark.parametrize("method", ["er", "er+ewc", "er+mas", "der++"])
@pytest.mark.parametrize("sizes", [(10,), (128,), (1, 3, 10, 17, 64)])
def test_graph_and_uncaptured_steps_agree_after_200_steps(method, sizes):
    graph, plain = _graph_pair(method)
    rng = np.random.default_rng(0)
    for i in range(200):
        n = sizes[i % len(sizes)]
        x, y = rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)
        a, b = graph.learn(x, y), plain.learn(x, y)
        assert a.loss == pytest.approx(b.loss, rel=1e-4) and a.new_correct == b.new_correct
        if i == 100:
            graph.consolidate()
            plain.consolidate()
    assert graph.step_path == "graph" and plain.step_path == "fixed"
    torch.testing.assert_close(graph._flat_param, plain._flat_param, rtol=1e-5, atol=1e-5)
    assert graph.buffer.seen == plain.buffer.seen == graph.samples_learned
    assert torch.equal(graph.buffer.y, plain.buffer.y)


def test_graph_is_the_default_on_cuda_and_reports_the_previous_step():
    learner = OnlineLearner(models.mlp(784, [100, 100], 10), 3_000_000, device="cuda")  # der++
    x, y = np.random.rand(10, 784).astype(np.float32), np.arange(10)
    first, second = learner.learn(x, y), learner.learn(x, y)
    assert learner.step_path == "graph"
    assert first.lag == 1 and first.batch_size == 0  # nothing had finished: no step reported
    assert second.lag == 1 and second.step == 1 and second.batch_size == 10  # the first call's step
    assert learner.prequential_accuracy is not None and learner.step == 2  # reading it waits for the last step


def test_graph_step_resumes_exactly_after_save_and_load(tmp_path):
    graph, _ = _graph_pair("er+ewc")
    rng = np.random.default_rng(1)
    data = [(rng.random((10, 784), dtype=np.float32), rng.integers(0, 10, 10)) for _ in range(60)]
    for x, y in data[:30]:
        graph.learn(x, y)
    graph.consolidate()
    graph.save(tmp_path / "s.pt")
    again = OnlineLearner.load(tmp_path / "s.pt", device="cuda")
    for x, y in data[30:]:
        graph.learn(x, y)
        again.learn(x, y)
    assert again.step_path == "graph"
    torch.testing.assert_close(graph._flat_param, again._flat_param, rtol=0, atol=0)


def test_a_model_the_graph_cannot_take_falls_back_with_the_reason(caplog):
    class HostSync(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = models.mlp(784, [32], 10)
            self.input_dim = 784

        def forward(self, x):
            if float(x.abs().max()) > 1e9:  # a host read inside forward: capture must fail, not hang
                x = x.clamp(-1e9, 1e9)
            return self.net(x)

    learner = OnlineLearner(HostSync(), 3_000_000, method="er", device="cuda")
    x, y = np.random.rand(10, 784).astype(np.float32), np.arange(10)
    with caplog.at_level("WARNING", logger="edge_cl"):
        for _ in range(3):
            learner.learn(x, y)
    assert learner.step_path == "eager" and learner.step == 3
    assert sum("CUDA-graph step is off" in r.getMessage() for r in caplog.records) == 1
