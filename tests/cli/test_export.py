"""Tests of ``edge-cl export``: learner state -> verified ONNX file or snapshot directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge_cl import OnlineLearner, models
from edge_cl.cli.main import app
from edge_cl.export import read_manifest, read_metadata
from edge_cl.runtime import make_session

pytestmark = pytest.mark.integration


def _saved_learner(path: Path, steps: int = 12) -> OnlineLearner:
    torch.manual_seed(0)
    spec: dict[str, Any] = {"input_dim": 10, "hidden": [8], "num_classes": 3}
    learner = OnlineLearner(models.mlp(**spec), OnlineLearner.required_bytes(models.mlp(**spec), buffer_samples=40),
                            device="cpu", seed=0)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = rng.normal(size=(4, 10)).astype(np.float32)
        learner.learn(x, (x[:, 0] > 0).astype(np.int64))
    learner.save(path)
    return learner


def test_export_to_file_matches_the_learner(tmp_path: Path) -> None:
    learner = _saved_learner(tmp_path / "state.pt")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "state.pt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out.read_bytes())
    assert meta["step"] == "12" and json.loads(meta["input_shape"]) == [10]
    assert float(meta["prequential_accuracy"]) == pytest.approx(learner.prequential_accuracy)
    x = np.random.default_rng(1).normal(size=(5, 10)).astype(np.float32)
    proba = make_session(out.read_bytes()).run(["probabilities"], {"input": x})[0]
    np.testing.assert_allclose(proba, learner.predict_proba(x), atol=1e-5)


def test_export_to_directory_publishes_a_manifest(tmp_path: Path) -> None:
    _saved_learner(tmp_path / "state.pt", steps=5)
    out = tmp_path / "snapshots"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "state.pt"), "--out", str(out), "--keep", "2"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["file"] == "model-5.onnx" and manifest["step"] == 5


def test_export_refuses_unknown_exporter_and_bad_state(tmp_path: Path) -> None:
    _saved_learner(tmp_path / "state.pt", steps=1)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "state.pt"), "--out", str(tmp_path / "m.onnx"),
                                      "--exporter", "magic"])
    assert result.exit_code != 0 and "torchscript" in result.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a state")
    result = CliRunner().invoke(app, ["export", str(bad), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and not (tmp_path / "m.onnx").exists()
