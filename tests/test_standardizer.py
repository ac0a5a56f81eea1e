"""The online input standardiser: numpy's statistics over the stream, exact save/load, ONNX parity, budget."""

import numpy as np
import pytest
import torch

from edge_cl import OnlineLearner, models
from edge_cl.standardizer import RunningStandardizer, Standardized


def _raw_stream(seed=0, n=300, dim=5):
    """Sensor-like features in physical units: very different offsets and scales."""
    rng = np.random.default_rng(seed)
    offsets = np.array([1e4, -3.0, 250.0, 0.0, 7e5])[:dim]
    scales = np.array([2e3, 0.01, 40.0, 1.0, 1e5])[:dim]
    x = (offsets + scales * rng.standard_normal((n, dim))).astype(np.float32)
    y = (x[:, 0] > 1e4).astype(np.int64) ^ (x[:, 2] > 250.0).astype(np.int64)
    return x, y


def test_statistics_equal_numpy_over_the_stream():
    x, _ = _raw_stream()
    st = RunningStandardizer(x.shape[1])
    seen = 0
    for size in [1, 3, 10, 7, 1, 50, 28, 100, 100]:
        st.update(torch.from_numpy(x[seen:seen + size]))
        seen += size
        ref = x[:seen].astype(np.float64)
        assert int(st.count) == seen
        np.testing.assert_allclose(st.mean.numpy(), ref.mean(0), rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(st.var.numpy(), ref.var(0), rtol=1e-9, atol=1e-9)
    out = st(torch.from_numpy(x)).double().numpy()
    expected = (x.astype(np.float64) - x.mean(0, dtype=np.float64)) / x.astype(np.float64).std(0)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_constant_feature_and_empty_statistics_do_not_blow_up():
    st = RunningStandardizer(2)
    x = torch.tensor([[5.0, 1.0]])
    torch.testing.assert_close(st(x), x)  # nothing seen: identity
    st.update(x)
    st.update(torch.tensor([[5.0, 3.0]]))
    out = st(torch.tensor([[5.0, 2.0]]))
    assert out[0, 0] == 0.0 and torch.isfinite(out).all()


def _learner(standardize=True, seed=0):
    torch.manual_seed(seed)
    model = models.mlp(input_dim=5, hidden=[16], num_classes=2)
    # float32 storage: the raw stream reaches 8.5e5, beyond float16's range (the default storage warns about it,
    # tests/test_defaults.py); these tests are about the standardiser.
    budget = OnlineLearner.required_bytes(model, buffer_samples=100, method="er", standardize=standardize,
                                          storage="float32")
    return OnlineLearner(model, budget_bytes=budget, method="er", lr=0.1, device="cpu", seed=seed,
                         standardize=standardize, storage="float32")


def test_learner_standardizes_raw_units_and_counts_the_statistics_in_the_budget():
    x, y = _raw_stream(n=2000)
    on, off = _learner(True), _learner(False)
    for i in range(0, len(y), 10):
        on.learn(x[i:i + 10], y[i:i + 10])
        off.learn(x[i:i + 10], y[i:i + 10])
    np.testing.assert_allclose(on.standardizer.mean.numpy(), x.astype(np.float64).mean(0), rtol=1e-9)
    assert on.prequential_accuracy > off.prequential_accuracy + 0.1  # raw units defeat the plain MLP
    report = on.memory_report()
    assert report["parts"]["standardizer"] == 8 + 2 * 5 * 8
    assert report["used_bytes"] <= report["budget_bytes"]
    assert "standardizer" not in off.memory_report()["parts"]


def test_save_load_resumes_exactly(tmp_path):
    x, y = _raw_stream(n=400)
    a = _learner()
    for i in range(0, 200, 10):
        a.learn(x[i:i + 10], y[i:i + 10])
    a.save(tmp_path / "s.pt")
    b = OnlineLearner.load(tmp_path / "s.pt", device="cpu")
    assert isinstance(b.model, Standardized)
    for i in range(200, 400, 10):
        a.learn(x[i:i + 10], y[i:i + 10])
        b.learn(x[i:i + 10], y[i:i + 10])
    for (k, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), k


def test_onnx_graph_contains_the_transform():
    pytest.importorskip("onnxruntime")
    from edge_cl.export.onnx_export import export_onnx, read_metadata
    from edge_cl.export.parity import check_parity

    x, y = _raw_stream(n=300)
    learner = _learner()
    for i in range(0, 300, 10):
        learner.learn(x[i:i + 10], y[i:i + 10])
    data = export_onnx(learner.model, step=learner.step)
    assert read_metadata(data)["standardized"] == "true"
    parity = check_parity(learner.model, data, torch.from_numpy(x[:32]), tolerance=1e-5)
    assert parity.ok, parity
    from edge_cl.runtime import make_session

    probs = make_session(data).run(["probabilities"], {"input": x[:32]})[0]
    np.testing.assert_allclose(probs, learner.predict_proba(x[:32]), atol=1e-5)


def test_a_sensor_that_starts_moving_late_is_clipped_and_learning_continues():
    """Elec2's Victoria features are constant for 17,424 rows, then move: about 132 standard deviations."""
    import numpy as np

    from edge_cl.learner import OnlineLearner

    st = RunningStandardizer(2)
    x = torch.zeros(10_000, 2, dtype=torch.float64)
    x[:, 0] = torch.linspace(0, 1, 10_000, dtype=torch.float64)
    st.update(x)
    moved = torch.tensor([[0.5, 0.3]], dtype=torch.float64)
    st.update(moved)
    out = st(moved.float())
    assert out.abs().max() <= 5.0 and out[0, 1] == 5.0

    rng = np.random.default_rng(0)
    xs = rng.random((3000, 2)).astype(np.float32)
    xs[:2000, 1] = 0.4  # constant, then moving
    ys = (xs[:, 0] > 0.5).astype(np.int64)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    learner = OnlineLearner(model, budget_bytes=200_000, method="er", replay_batch=1, lr=0.1, standardize=True, input_dim=2,
                            device="cpu", seed=0)
    for i in range(3000):
        learner.learn(torch.from_numpy(xs[i:i + 1]), torch.from_numpy(ys[i:i + 1]))
    assert learner.skipped_steps == 0
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


def test_a_standardiser_decided_off_is_the_clip_alone_bit_for_bit():
    """The learner's automatic rule turns the standardiser off on sparse [-1, 1] inputs; its forward is then the
    clip alone (one operation, not five), and gives the bits the full formula gives with empty statistics."""
    full = RunningStandardizer(8)
    fast = RunningStandardizer(8)
    fast.passthrough = True
    x = torch.randn(64, 8) * 4
    assert torch.equal(full(x), fast(x))
    rng = np.random.default_rng(0)
    sparse = (rng.random((20, 8)) * (rng.random((20, 8)) < 0.3)).astype(np.float32)
    learner = OnlineLearner(models.mlp(8, [16], 2), budget_bytes=60_000)
    learner.learn(sparse, np.arange(20) % 2)
    assert learner.standardizer is None and learner.model.standardizer.passthrough
    resumed = OnlineLearner(models.mlp(8, [16], 2), budget_bytes=60_000)
    resumed.load_state_dict(learner.state_dict())
    assert resumed.model.standardizer.passthrough
    assert np.array_equal(resumed.predict_proba(sparse), learner.predict_proba(sparse))
