"""Tests of ``edge-cl predict``: .npy and JSON-lines inputs, stdout and file outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge_cl import models
from edge_cl.cli.main import app
from edge_cl.cli.predict import read_inputs
from edge_cl.export import publish_snapshot


@pytest.fixture()
def snapshot(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = models.mlp(input_dim=6, hidden=[8], num_classes=3).eval()
    publish_snapshot(model, tmp_path / "snaps", step=3, sample_inputs=torch.randn(4, 6))
    return tmp_path / "snaps", model


def _expected(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)), -1).numpy()


def test_read_inputs_accepts_npy_and_json_lines(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.arange(4, dtype=np.float64))
    assert read_inputs(tmp_path / "one.npy").shape == (1, 4)
    (tmp_path / "x.jsonl").write_text('[1, 2]\n\n{"x": [3, 4]}\n')
    np.testing.assert_array_equal(read_inputs(tmp_path / "x.jsonl"), [[1, 2], [3, 4]])
    (tmp_path / "bad.jsonl").write_text("[1, 2]\n[3\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_inputs(tmp_path / "bad.jsonl")
    (tmp_path / "ragged.jsonl").write_text("[1, 2]\n[3]\n")
    with pytest.raises(ValueError, match="equally long"):
        read_inputs(tmp_path / "ragged.jsonl")


@pytest.mark.integration
def test_predict_npy_to_stdout_with_probabilities(tmp_path: Path, snapshot: tuple[Path, torch.nn.Module]) -> None:
    directory, model = snapshot
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = CliRunner().invoke(app, ["predict", str(directory), "--input", str(tmp_path / "x.npy"), "--proba"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    expected = _expected(model, x)
    assert [r["class"] for r in rows] == expected.argmax(1).tolist()
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, atol=1e-5)


@pytest.mark.integration
def test_predict_json_lines_to_npy_file(tmp_path: Path, snapshot: tuple[Path, torch.nn.Module]) -> None:
    directory, model = snapshot
    x = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r.tolist()) + "\n" for r in x))
    out = tmp_path / "classes.npy"
    result = CliRunner().invoke(app, ["predict", str(directory), "-i", str(tmp_path / "x.jsonl"), "-o", str(out),
                                      "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(out), _expected(model, x).argmax(1))


@pytest.mark.integration
def test_predict_reports_wrong_width(tmp_path: Path, snapshot: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = snapshot
    np.save(tmp_path / "x.npy", np.zeros((2, 7), np.float32))
    result = CliRunner().invoke(app, ["predict", str(directory), "--input", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and "[B, 6]" in result.output


def _damage_a_weight(path: Path) -> None:
    """Change one float of the largest initializer in place: still a loadable ONNX file, different weights."""
    import onnx

    model = onnx.load(str(path))
    raw = max((t.raw_data for t in model.graph.initializer), key=len)
    data = bytearray(path.read_bytes())
    at = data.find(raw) + len(raw) // 2
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.integration
def test_predict_on_a_damaged_onnx_file_of_a_snapshot_directory_is_refused(
        tmp_path: Path, snapshot: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = snapshot
    onnx_file = directory / json.loads((directory / "manifest.json").read_text())["file"]
    _damage_a_weight(onnx_file)
    np.save(tmp_path / "x.npy", np.zeros((2, 6), np.float32))
    result = CliRunner().invoke(app, ["predict", str(onnx_file), "--input", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and "sha256 check" in " ".join(result.output.split())


@pytest.mark.integration
def test_predict_on_an_onnx_file_outside_a_snapshot_directory_warns_unverified(
        tmp_path: Path, snapshot: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = snapshot
    lone = tmp_path / "lone.onnx"
    lone.write_bytes((directory / json.loads((directory / "manifest.json").read_text())["file"]).read_bytes())
    np.save(tmp_path / "x.npy", np.zeros((2, 6), np.float32))
    result = CliRunner().invoke(app, ["predict", str(lone), "--input", str(tmp_path / "x.npy")])
    assert result.exit_code == 0 and "not checked" in " ".join(result.output.split())


def test_predict_picks_a_context_of_a_contexts_snapshot(tmp_path: Path) -> None:
    """--graph-input context=I: the context I of a method 'contexts' snapshot predicts; left out, the learner's."""
    from tests.methods.flipped import ABA, DIM, make, run

    learner = make("contexts")
    run(learner, ABA[:2])  # A then B (labels shifted by one): B's context predicts
    job_model = learner.export_model().eval()
    publish_snapshot(job_model, tmp_path / "snaps", step=learner.step, sample_inputs=torch.randn(8, DIM))
    x = np.random.default_rng(0).normal(size=(40, DIM)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = {}
    for extra in ([], ["--graph-input", "context=0"], ["--graph-input", "context=1"]):
        result = CliRunner().invoke(app, ["predict", str(tmp_path / "snaps"), "--input", str(tmp_path / "x.npy"),
                                          "--output", str(tmp_path / "p.npy"), *extra])
        assert result.exit_code == 0, result.output
        out[" ".join(extra)] = np.load(tmp_path / "p.npy")
    with torch.no_grad():
        for index in (0, 1):
            want = job_model.forward_graph(torch.from_numpy(x), torch.tensor(index))[0].argmax(1).numpy()
            np.testing.assert_array_equal(out[f"--graph-input context={index}"], want)
    np.testing.assert_array_equal(out[""], learner.predict(x))
    assert not np.array_equal(out["--graph-input context=0"], out["--graph-input context=1"])
    bad = CliRunner().invoke(app, ["predict", str(tmp_path / "snaps"), "--input", str(tmp_path / "x.npy"),
                                   "--graph-input", "season=2"])
    assert bad.exit_code == 2 and "offers ['context']" in " ".join(bad.output.split())
    bad = CliRunner().invoke(app, ["predict", str(tmp_path / "snaps"), "--input", str(tmp_path / "x.npy"),
                                   "--graph-input", "context"])
    assert bad.exit_code == 2 and "NAME=NUMBER" in bad.output
