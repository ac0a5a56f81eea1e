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


WINDOW_NET = '''
import torch
from torch import nn


class WindowNet(nn.Module):  # the model contract only: flat [B, 12] rows, reshaped inside; no attributes
    def __init__(self, classes):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x.reshape(x.shape[0], 3, 4))).mean(-1))


def build(classes):
    return WindowNet(classes)
'''


def _saved_custom_learner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, Path, OnlineLearner]:
    """A learner of a factory model from a module in its own directory, saved; the module is importable only
    while building it (as for a daemon that found it beside its config)."""
    import sys
    import uuid

    module = f"export_window_net_{uuid.uuid4().hex[:8]}"
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / f"{module}.py").write_text(WINDOW_NET)
    path_before = list(sys.path)
    monkeypatch.setattr(sys, "path", [*path_before, str(user_dir)])
    torch.manual_seed(0)
    model = models.build({"type": f"{module}:build", "classes": 3})
    learner = OnlineLearner(model, 200_000, device="cpu", seed=0, input_dim=12)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.normal(size=(4, 12)).astype(np.float32)
        learner.learn(x, (x[:, 0] > 0).astype(np.int64))
    state = tmp_path / "state.pt"
    learner.save(state)
    monkeypatch.setattr(sys, "path", list(path_before))  # export adds --import-dir: undone after the test
    monkeypatch.delitem(sys.modules, module)
    return state, module, user_dir, learner


def test_export_input_shape_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, _, user_dir, learner = _saved_custom_learner(tmp_path, monkeypatch)
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(state), "--out", str(tmp_path / "snaps"), "--input-shape", "3,4",
                              "--import-dir", str(user_dir)])
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "snaps")["input_shape"] == [3, 4]
    out = tmp_path / "flat.onnx"
    res = runner.invoke(app, ["export", str(state), "--out", str(out), "--input-shape", "12",
                              "--import-dir", str(user_dir)])
    assert res.exit_code == 0, res.output
    assert json.loads(read_metadata(out.read_bytes())["input_shape"]) == [12]
    x = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
    proba = make_session(out.read_bytes()).run(["probabilities"], {"input": x})[0]
    np.testing.assert_allclose(proba, learner.predict_proba(x), atol=1e-5)
    for bad, said in (("5", "holds 5 features but the model takes 12"), ("3,x", "positive integers")):
        res = runner.invoke(app, ["export", str(state), "--out", str(tmp_path / "bad.onnx"), "--input-shape", bad,
                                  "--import-dir", str(user_dir)])
        assert res.exit_code == 2 and said in " ".join(res.output.split()) and "Traceback" not in res.output
        assert not (tmp_path / "bad.onnx").exists()


def test_export_of_a_factory_model_says_in_one_line_what_to_pass(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    state, module, user_dir, _ = _saved_custom_learner(tmp_path, monkeypatch)
    res = CliRunner().invoke(app, ["export", str(state), "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    assert f"'{module}:build'" in lines[0] and "--import-dir" in lines[0] and f"{module}.py" in lines[0]
    res = CliRunner().invoke(app, ["export", str(state), "--out", str(tmp_path / "m.onnx"),
                                   "--import-dir", str(user_dir)])
    assert res.exit_code == 0, res.output
    # Without --input-shape the model's input_dim is recorded: it has no input_shape attribute of its own.
    assert json.loads(read_metadata((tmp_path / "m.onnx").read_bytes())["input_shape"]) == [12]


@pytest.mark.parametrize("text", ['{"a": 1}\n', "# a text file\nline two\n", "hello\n"])
def test_export_of_a_text_file_is_one_line_without_torch_advice(tmp_path: Path, text: str) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text(text)
    res = CliRunner().invoke(app, ["export", str(junk), "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert str(junk) in lines[0] and "not an edge_cl state file" in lines[0]
    assert "weights_only" not in res.output and "trusted source" not in res.output


def test_export_of_a_contexts_learner_holds_every_context(tmp_path: Path) -> None:
    """`edge-cl export` publishes learner.export_model(): with method 'contexts', the heads and the router's choice."""
    torch.manual_seed(0)
    model = models.mlp(6, [16], 3)
    learner = OnlineLearner(model, OnlineLearner.required_bytes(model, buffer_samples=100, method="contexts"),
                            method="contexts", device="cpu", seed=0)
    rng = np.random.default_rng(0)
    for i in range(300):  # the labels flip at step 150: a second context opens
        x = rng.normal(size=(10, 6)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
        learner.learn(x, y if i < 150 else 2 - y)
    held = learner.get_method("contexts").contexts()
    assert len(held) >= 2
    learner.save(tmp_path / "state.pt")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "state.pt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out.read_bytes())
    assert json.loads(meta["contexts"]) == held
    session = make_session(out.read_bytes())
    x = rng.normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_allclose(session.run(["probabilities"], {"input": x})[0], learner.predict_proba(x), atol=1e-5)
    every = session.run(["context_logits"], {"input": x})[0]
    assert every.shape == (5, len(held), 3)
