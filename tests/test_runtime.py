"""Tests of edge_cl.runtime.SnapshotRunner: predictions, hot reload under load, refusing corrupt snapshots."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl import models
from edge_cl.export import SnapshotPublisher, publish_snapshot
from edge_cl.runtime import SnapshotError, SnapshotIntegrityError, SnapshotRunner

pytestmark = pytest.mark.integration


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.mlp(input_dim=12, hidden=[16], num_classes=4).eval()


def _x(n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 12)).astype(np.float32)


def _torch_proba(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)), -1).numpy()


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x5A
    path.write_bytes(bytes(data))


def test_runner_predicts_like_torch(tmp_path: Path) -> None:
    model = _model(0)
    publish_snapshot(model, tmp_path, step=5, sample_inputs=torch.from_numpy(_x(8)))
    runner = SnapshotRunner(tmp_path)
    x = _x()
    assert runner.step == 5 and runner.input_dim == 12
    np.testing.assert_allclose(runner.predict_proba(x), _torch_proba(model, x), atol=1e-5)
    np.testing.assert_array_equal(runner.predict(x), _torch_proba(model, x).argmax(1))
    assert runner.predict(x[0]).shape == (1,)  # one sample without a batch axis
    assert runner.metadata["edge_cl.step"] == "5"


def test_runner_on_a_single_file(tmp_path: Path) -> None:
    result = publish_snapshot(_model(0), tmp_path, step=9, sample_inputs=torch.from_numpy(_x(4)))
    assert result.path is not None
    runner = SnapshotRunner(result.path)
    assert runner.step == 9 and runner.predict(_x(3)).shape == (3,)


def test_wrong_input_width_is_refused(tmp_path: Path) -> None:
    publish_snapshot(_model(0), tmp_path, step=1, sample_inputs=torch.from_numpy(_x(4)))
    with pytest.raises(ValueError, match=r"\[B, 12\]"):
        SnapshotRunner(tmp_path).predict(np.zeros((2, 13), np.float32))


def test_missing_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="manifest.json"):
        SnapshotRunner(tmp_path)
    with pytest.raises(SnapshotError, match="neither"):
        SnapshotRunner(tmp_path / "nope")


def test_picks_up_new_versions_while_predicting(tmp_path: Path) -> None:
    publisher = SnapshotPublisher(tmp_path, keep=2)
    publisher.publish(_model(0), step=0, sample_inputs=torch.from_numpy(_x(8)))
    runner = SnapshotRunner(tmp_path, poll_seconds=0.0)
    final = _model(3)
    errors: list[BaseException] = []

    def publish_more() -> None:
        try:
            for step, model in ((1, _model(1)), (2, _model(2)), (3, final)):
                assert publisher.publish(model, step=step, sample_inputs=torch.from_numpy(_x(8))).published
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    writer = threading.Thread(target=publish_more)
    writer.start()
    x, calls, steps_seen = _x(), 0, set()
    while writer.is_alive() or calls == 0:
        proba = runner.predict_proba(x)  # must never raise
        assert proba.shape == (32, 4) and np.isfinite(proba).all()
        steps_seen.add(runner.step)
        calls += 1
    writer.join()
    assert not errors, errors
    runner.predict(x)
    assert runner.step == 3 and runner.refused == 0
    assert len(steps_seen | {runner.step}) >= 2 and runner.reloads >= 2
    np.testing.assert_allclose(runner.predict_proba(x), _torch_proba(final, x), atol=1e-5)


def test_corrupt_snapshot_is_refused_at_start(tmp_path: Path) -> None:
    result = publish_snapshot(_model(0), tmp_path, step=1, sample_inputs=torch.from_numpy(_x(4)))
    assert result.path is not None
    _flip_bytes(result.path)
    with pytest.raises(SnapshotIntegrityError, match="sha256") as info:
        SnapshotRunner(tmp_path)
    assert result.path.name in str(info.value)


def test_corrupt_new_snapshot_is_refused_and_old_one_keeps_serving(tmp_path: Path) -> None:
    publisher = SnapshotPublisher(tmp_path)
    old = _model(0)
    publisher.publish(old, step=1, sample_inputs=torch.from_numpy(_x(4)))
    runner = SnapshotRunner(tmp_path, poll_seconds=0.0)
    result = publisher.publish(_model(1), step=2, sample_inputs=torch.from_numpy(_x(4)))
    assert result.path is not None
    _flip_bytes(result.path)
    x = _x()
    np.testing.assert_allclose(runner.predict_proba(x), _torch_proba(old, x), atol=1e-5)
    assert runner.step == 1 and runner.refused == 1 and "sha256" in (runner.last_error or "")
    runner.predict(x)
    assert runner.refused == 1  # not retried until the manifest changes
    with pytest.raises(SnapshotIntegrityError, match="sha256"):
        runner.refresh()


def test_removed_manifest_keeps_serving_and_is_reported_once(tmp_path: Path) -> None:
    model = _model(0)
    publish_snapshot(model, tmp_path, step=1, sample_inputs=torch.from_numpy(_x(4)))
    runner = SnapshotRunner(tmp_path, poll_seconds=0.0)
    (tmp_path / "manifest.json").unlink()
    x = _x()
    for _ in range(3):
        np.testing.assert_allclose(runner.predict_proba(x), _torch_proba(model, x), atol=1e-5)
    assert runner.refused == 1 and "manifest.json" in (runner.last_error or "")
    publish_snapshot(_model(1), tmp_path, step=2, sample_inputs=torch.from_numpy(_x(4)))
    runner.predict(x)
    assert runner.step == 2
