"""Tests of edge_cl.export.publish: manifest, retention, refused snapshots, atomicity under failures and kills."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cl import models
from edge_cl.export import SnapshotPublisher, publish_snapshot, read_manifest
from edge_cl.export.manifest import SnapshotIntegrityError, read_verified, sha256_hex
from edge_cl.export.onnx_export import read_metadata

pytestmark = pytest.mark.integration  # every publish runs onnxruntime for the parity gate

HELPER = Path(__file__).with_name("_publish_loop.py")


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.mlp(input_dim=10, hidden=[8], num_classes=3).eval()


def _first_linear(model: torch.nn.Module) -> torch.nn.Linear:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Linear))


def _inputs() -> torch.Tensor:
    return torch.randn(8, 10, generator=torch.Generator().manual_seed(3))


def _assert_consistent(directory: Path) -> dict:
    manifest = read_manifest(directory)
    data = read_verified(directory, manifest)  # raises on a missing or corrupt file
    assert read_metadata(data)["step"] == str(manifest["step"])
    return manifest


def test_publish_writes_file_then_manifest(tmp_path: Path) -> None:
    result = publish_snapshot(_model(), tmp_path, step=7, sample_inputs=_inputs(), prequential_accuracy=0.5)
    assert result.published and result.reason is None
    assert result.path == tmp_path / "model-7.onnx"
    assert result.sha256 == sha256_hex(result.path.read_bytes())
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    assert result.export_seconds > 0 and result.verify_seconds > 0
    manifest = _assert_consistent(tmp_path)
    assert manifest["file"] == "model-7.onnx" and manifest["sha256"] == result.sha256
    assert manifest["step"] == 7 and manifest["input_shape"] == [10] and manifest["num_classes"] == 3
    assert manifest["prequential_accuracy"] == 0.5 and manifest["created"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "model-7.onnx"]


def test_keeps_last_k_in_publication_order(tmp_path: Path) -> None:
    publisher = SnapshotPublisher(tmp_path, keep=2)
    for step in (5, 6, 7, 2):  # 2 last: a learner restored from an older checkpoint
        assert publisher.publish(_model(step), step=step, sample_inputs=_inputs()).published
        time.sleep(0.01)  # distinct mtimes on coarse file systems
    assert sorted(p.name for p in tmp_path.glob("model-*.onnx")) == ["model-2.onnx", "model-7.onnx"]
    assert _assert_consistent(tmp_path)["step"] == 2
    assert publisher.published == 4 and publisher.rejected == 0


def test_same_step_twice_never_overwrites_a_published_file(tmp_path: Path) -> None:
    first = publish_snapshot(_model(0), tmp_path, step=4, sample_inputs=_inputs())
    second = publish_snapshot(_model(1), tmp_path, step=4, sample_inputs=_inputs())
    assert first.path is not None and second.path is not None
    assert first.path != second.path and first.path.exists()
    assert sha256_hex(first.path.read_bytes()) == first.sha256
    assert _assert_consistent(tmp_path)["file"] == second.path.name


def test_failed_gate_keeps_previous_snapshot_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    publisher = SnapshotPublisher(tmp_path)
    assert publisher.publish(_model(), step=1, sample_inputs=_inputs()).published
    before = (tmp_path / "manifest.json").read_bytes()
    broken = _model()
    with torch.no_grad():
        _first_linear(broken).weight.fill_(math.nan)
    with caplog.at_level(logging.WARNING, logger="edge_cl.export"):
        result = publisher.publish(broken, step=2, sample_inputs=_inputs())
    assert not result.published and result.path is None and result.sha256 is None
    assert "non-finite" in (result.reason or "")
    assert publisher.rejected == 1 and publisher.published == 1 and publisher.last_result == result
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert not (tmp_path / "model-2.onnx").exists()
    assert any("not published" in r.getMessage() for r in caplog.records)


def test_wrong_sample_inputs_raise_before_exporting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_inputs"):
        publish_snapshot(_model(), tmp_path, step=1, sample_inputs=torch.zeros(4, 11))
    with pytest.raises(ValueError, match="keep"):
        SnapshotPublisher(tmp_path, keep=0)


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_crash_at_any_write_leaves_old_manifest_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      fail_at: int) -> None:
    publish_snapshot(_model(0), tmp_path, step=1, sample_inputs=_inputs())
    calls = {"n": 0}
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == (fail_at + 1) // 2:  # 1st replace = model file, 2nd = manifest
            if fail_at % 2:
                raise OSError("disk full (injected)")
            real_replace(src, dst)
            raise OSError("crash after rename (injected)")
        real_replace(src, dst)

    monkeypatch.setattr("edge_cl.atomic_file.os.replace", failing_replace)
    with pytest.raises(OSError, match="injected"):
        publish_snapshot(_model(1), tmp_path, step=2, sample_inputs=_inputs())
    manifest = _assert_consistent(tmp_path)
    assert manifest["step"] == (2 if fail_at == 4 else 1)
    assert not list(tmp_path.glob(".*.tmp"))


def test_stale_temp_files_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".model-3.onnx.abc.tmp").write_bytes(b"partial")
    (tmp_path / ".manifest.json.xyz.tmp").write_bytes(b"{")
    publish_snapshot(_model(), tmp_path, step=4, sample_inputs=_inputs())
    assert not list(tmp_path.glob(".*.tmp"))


def test_corrupt_file_is_detected(tmp_path: Path) -> None:
    result = publish_snapshot(_model(), tmp_path, step=1, sample_inputs=_inputs())
    assert result.path is not None
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    result.path.write_bytes(bytes(data))
    with pytest.raises(SnapshotIntegrityError, match="sha256"):
        read_verified(tmp_path, read_manifest(tmp_path))


def test_sigkill_at_random_points_never_breaks_the_manifest(tmp_path: Path) -> None:
    rng = np.random.default_rng(1234)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    step, verified_reads = 0, 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(HELPER), str(tmp_path), str(step)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
            deadline = time.monotonic() + rng.uniform(0.0, 0.4)
            while time.monotonic() < deadline:  # a reader polling while the writer works
                try:
                    _assert_consistent(tmp_path)
                    verified_reads += 1
                except FileNotFoundError:
                    pass  # retention removed an old file between our manifest read and open: retry
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        manifest = _assert_consistent(tmp_path)
        assert manifest["step"] >= step
        step = manifest["step"] + 1
    assert verified_reads > 0
    assert len(list(tmp_path.glob("model-*.onnx"))) <= 3 + 1  # keep=3, plus at most one written before its manifest
