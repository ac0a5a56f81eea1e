"""The learner's input defaults for a user who tunes nothing (issue #28 item 5): vector inputs are standardised
(sparse inputs in [-1, 1], such as pixels, are left as they are), the buffer stores float16 (uint8 for 8-bit data,
which it holds exactly) and warns about raw values it cannot hold, and the scale warning fires on a raw-unit stream
learned without the standardiser."""

from __future__ import annotations

import logging

import numpy as np
import torch

from edge_cl import OnlineLearner, models
from edge_cl.buffer_storage import StorageCodec
from edge_cl.learner import BOUNDED_SCALE, SCALE_RATIO, SPARSE_FRACTION, _leave_raw, _scale_warning

# A machine's sensors in physical units: temperature (C), pressure (hPa), vibration (g), rpm, humidity (%), flow.
MEANS = np.array([25.0, 1000.0, 0.01, 2000.0, 50.0, 105.0])
STDS = np.array([5.0, 10.0, 0.004, 300.0, 10.0, 15.0])


def sensor_stream(n: int, seed: int = 0, means: np.ndarray = MEANS, stds: np.ndarray = STDS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of 6 raw-unit features; the class (3) is which of temperature, pressure and rpm is furthest above
    its mean in its own standard deviations: learnable, but only once the features are on one scale."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 6))
    x = (means + z * stds).astype(np.float32)
    y = z[:, [0, 1, 3]].argmax(1).astype(np.int64)
    return x, y


def prequential(learner: OnlineLearner, x: np.ndarray, y: np.ndarray, batch: int = 10) -> float:
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((learner.predict(x[i:i + batch]) == y[i:i + batch]).sum())
        learner.learn(x[i:i + batch], y[i:i + batch])
    return correct / len(y)


def learner(dim: int = 6, classes: int = 3, **options) -> OnlineLearner:
    torch.manual_seed(0)
    return OnlineLearner(models.mlp(dim, [32], classes), budget_bytes=100_000, device="cpu", **options)


def test_the_defaults_are_auto_storage_and_the_automatic_standardiser():
    lrn = learner()
    assert lrn.config.storage == "auto" and lrn.config.standardize is None
    assert lrn.buffer.codec.kind == "float16"  # until the first batch shows 8-bit data
    assert lrn.standardizer is not None  # held from the start: its bytes are in the budget either way
    assert "standardizer" in lrn.memory_report()["parts"]


def test_a_raw_unit_stream_is_learned_by_the_default_learner():
    x, y = sensor_stream(4000)
    lrn = learner()
    acc = prequential(lrn, x, y)
    assert lrn.standardizer is not None, "inputs beyond [-1, 1] must turn the standardiser on"
    assert acc >= 0.6, f"prequential accuracy {acc:.3f} on a 3-class raw-unit stream (chance 0.33)"


def test_the_scale_warning_fires_on_the_raw_unit_stream_without_the_standardiser(caplog):
    x, y = sensor_stream(400)
    peak = torch.as_tensor(np.abs(x[:10]).max(0))
    assert float(peak.max() / peak.median()) < 1000  # the old SCALE_RATIO (1000x) let this stream pass silently
    assert SCALE_RATIO <= float(peak.max() / peak.median())
    lrn = learner(standardize=False)
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        prequential(lrn, x, y)
    warnings = [r.getMessage() for r in caplog.records if "differ in scale" in r.getMessage()]
    assert len(warnings) == 1 and "standardize=True" in warnings[0]
    assert _scale_warning(torch.as_tensor(x[:10])) is not None


def test_sparse_inputs_on_a_bounded_scale_are_left_as_they_are(tmp_path, caplog):
    rng = np.random.default_rng(1)
    x = (rng.random((200, 6)) * (rng.random((200, 6)) < 0.3)).astype(np.float32) * BOUNDED_SCALE  # 70% zeros
    y = (x[:, 0] > 0.1).astype(np.int64)
    lrn = learner(classes=2)
    parts_before = lrn.memory_report()["parts"]
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        prequential(lrn, x, y)
    assert lrn.standardizer is None, "sparse inputs in [-1, 1] (pixels, one-hot codes) are not standardised"
    assert float(lrn.model.standardizer.count) == 0  # never updated: the identity on these inputs
    assert lrn.memory_report()["parts"]["standardizer"] == parts_before["standardizer"]
    probe = torch.as_tensor(x[:5])
    assert torch.equal(lrn.model.standardizer(probe), probe)
    # The decision is part of the state: a reloaded learner keeps inputs raw even when later ones are larger.
    path = tmp_path / "s.pt"
    lrn.save(path)
    back = OnlineLearner.load(path, models.mlp(6, [32], 2), device="cpu")
    assert back.standardizer is None
    back.learn(x[:10] * 50, y[:10])
    assert float(back.model.standardizer.count) == 0


def test_dense_features_are_standardised_even_in_zero_to_one():
    rng = np.random.default_rng(2)
    dense = torch.as_tensor(rng.random((10, 6)), dtype=torch.float32)
    assert not _leave_raw(dense, float(dense.abs().max()))
    sparse = dense * (dense > 0.8)
    assert float((sparse == 0).float().mean()) >= SPARSE_FRACTION and _leave_raw(sparse, float(sparse.max()))
    assert not _leave_raw(sparse * 100, float(sparse.max() * 100))  # sparse but raw units: standardised
    lrn = learner(classes=2)
    lrn.learn(dense.numpy(), np.zeros(10, dtype=np.int64))
    assert lrn.standardizer is not None


def test_the_decision_to_standardise_survives_save_and_load(tmp_path):
    x, y = sensor_stream(300)
    lrn = learner()
    prequential(lrn, x, y)
    path = tmp_path / "s.pt"
    lrn.save(path)
    back = OnlineLearner.load(path, models.mlp(6, [32], 3), device="cpu")
    assert back.standardizer is not None and float(back.standardizer.count) == 300
    np.testing.assert_array_equal(back.predict(x[:50]), lrn.predict(x[:50]))
    # Undecided (saved before any batch): the loaded learner decides on its own first batch.
    fresh = learner()
    fresh.save(tmp_path / "f.pt")
    again = OnlineLearner.load(tmp_path / "f.pt", models.mlp(6, [32], 3), device="cpu")
    again.learn(x[:10], y[:10])
    assert again.standardizer is not None


def test_explicit_settings_are_kept():
    x, y = sensor_stream(50)
    off = learner(standardize=False, storage="float32")
    off.learn(x[:10], y[:10])
    assert off.standardizer is None and off.buffer.codec.kind == "float32"
    on = learner(standardize=True)
    on.learn(np.clip(x[:10], -1, 1) / 10, y[:10])
    assert on.standardizer is not None and float(on.standardizer.count) == 10


def test_image_models_are_not_standardised_by_default():
    model = models.build({"type": "cnn2d", "channels": 1, "height": 8, "width": 8, "num_classes": 2})
    lrn = OnlineLearner(model, budget_bytes=400_000, device="cpu")
    assert lrn.standardizer is None and "standardizer" not in lrn.memory_report()["parts"]


def test_float16_storage_warns_about_raw_values_beyond_its_range(caplog):
    x, y = sensor_stream(40)
    x[:, 1] *= 100  # pressure in Pa (~100,000): float16 saturates at 65504
    lrn = learner()
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        for i in range(0, 40, 10):
            lrn.learn(x[i:i + 10], y[i:i + 10])  # no exception: a glitching sensor must not stop the learner
    warnings = [r.getMessage() for r in caplog.records if "beyond what storage='float16'" in r.getMessage()]
    assert len(warnings) == 1 and "input feature 1" in warnings[0] and "storage='float32'" in warnings[0]
    stored = lrn.buffer.codec.decode(lrn.buffer.x[: len(lrn.buffer)])
    assert torch.isfinite(stored).all() and float(stored[:, 1].max()) == 65504
    exact = learner(storage="float32")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        exact.learn(x[:10], y[:10])
    assert not [r for r in caplog.records if "float16" in r.getMessage()]
    stored = exact.buffer.codec.decode(exact.buffer.x[: len(exact.buffer)])
    assert float(stored[:, 1].min()) > 65504


def test_float16_storage_flags_a_feature_it_would_blur(caplog):
    # A feature with a large offset and a small spread (a position in degrees, a line voltage): float16 steps of
    # 0.03 at 48 swallow a spread of 0.001.
    means = MEANS.copy()
    stds = STDS.copy()
    means[4], stds[4] = 48.1234, 0.001
    x, y = sensor_stream(400, means=means, stds=stds)
    lrn = learner()
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        prequential(lrn, x, y)
    warnings = [r.getMessage() for r in caplog.records if "float16" in r.getMessage()]
    assert len(warnings) == 1 and "feature 4" in warnings[0] and "storage='float32'" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        prequential(learner(), *sensor_stream(400))  # pressure ~1000 +- 10: steps of 0.5 are fine
    assert not [r for r in caplog.records if "float16" in r.getMessage()]


def test_float16_codec_saturates_instead_of_overflowing():
    codec = StorageCodec("float16")
    out = codec.decode(codec.encode(torch.tensor([[1e6, -1e6, 1.5, float("nan")]])))
    assert out[0, 0] == 65504 and out[0, 1] == -65504 and out[0, 2] == 1.5 and torch.isnan(out[0, 3])


def pixels(n: int, dim: int = 64, seed: int = 0, scale: float = 255.0) -> np.ndarray:
    """``n`` rows of 8-bit pixels as k / 255 in [0, 1] (``scale`` 255) or as integers 0..255 (``scale`` 1)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, dim)) / scale).astype(np.float32)


def test_auto_storage_keeps_8bit_inputs_as_uint8_exactly_with_twice_the_samples():
    lrn = learner(dim=64, classes=3)
    f16_capacity = lrn.buffer.capacity
    x = pixels(10)
    lrn.learn(x, np.arange(10) % 3)
    assert lrn.buffer.codec == StorageCodec("uint8", 0.0, 1.0)
    assert lrn.buffer.capacity > 1.9 * f16_capacity  # 1 byte an input element, not 2
    assert lrn.memory_report()["used_bytes"] <= lrn.config.budget_bytes
    stored = lrn.buffer.codec.decode(lrn.buffer.x[:10])
    assert torch.equal(stored, torch.as_tensor(x)), "8-bit data must be stored exactly"


def test_auto_storage_takes_integers_0_to_255_as_uint8_over_that_range():
    lrn = learner(dim=64, classes=3, standardize=True)
    x = pixels(10, scale=1.0)
    lrn.learn(x, np.arange(10) % 3)
    assert lrn.buffer.codec == StorageCodec("uint8", 0.0, 255.0)
    assert torch.equal(lrn.buffer.codec.decode(lrn.buffer.x[:10]), torch.as_tensor(x))


def test_auto_storage_stays_float16_for_other_inputs():
    x, y = sensor_stream(20)
    lrn = learner()
    lrn.learn(x[:10], y[:10])
    assert lrn.buffer.codec.kind == "float16"
    # Too little evidence: a batch of zeros, on/off flags, or few values decides float16.
    for batch in (np.zeros((10, 64), np.float32), (pixels(10) > 0.5).astype(np.float32), pixels(2)):
        lrn = learner(dim=64)
        lrn.learn(batch, np.zeros(len(batch), np.int64))
        assert lrn.buffer.codec.kind == "float16", batch[:2]


def test_auto_uint8_warns_once_when_later_inputs_leave_its_range(caplog):
    lrn = learner(dim=64, classes=3)
    lrn.learn(pixels(10), np.arange(10) % 3)
    with caplog.at_level(logging.WARNING, logger="edge_cl"):
        for seed in range(3):
            lrn.learn(pixels(10, seed=seed) * 3, np.arange(10) % 3)
    warnings = [r.getMessage() for r in caplog.records if "storage='auto' chose uint8" in r.getMessage()]
    assert len(warnings) == 1 and "storage='float16'" in warnings[0]


def test_auto_storage_choice_is_saved_and_resumes_bit_identically():
    def run(resume_at: int | None) -> OnlineLearner:
        lrn = learner(dim=64, classes=3)
        for i in range(20):
            if i == resume_at:
                state = lrn.state_dict()
                lrn = learner(dim=64, classes=3)
                assert lrn.buffer.codec.kind == "float16"
                lrn.load_state_dict(state)
            lrn.learn(pixels(10, seed=i), np.arange(10) % 3)
        return lrn

    straight, resumed = run(None), run(7)
    assert resumed.buffer.codec.kind == "uint8" and resumed.buffer.capacity == straight.buffer.capacity
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(straight.buffer.x, resumed.buffer.x)
