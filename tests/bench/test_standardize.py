"""`edge-cl bench --standardize`: the learner's online input standardiser, charged to the budget, stated."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_cl.bench.runner import BenchConfig, run_prequential_stream
from edge_cl.bench.streams import PrequentialStream
from edge_cl.cli.main import app


def _cfg(**kw):
    base = {"stream": "toy", "methods": ["er"], "device": "cpu", "budget_samples": 50, "batch": 1}
    base.update(kw)
    return BenchConfig(**base)


@pytest.fixture
def raw_units():
    """A linearly separable stream in raw sensor units: offsets of 1e3 and spreads of 1e2 break plain SGD."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((600, 3)).astype(np.float32)
    y = (z[:, 0] + z[:, 1] > 0).astype(np.int64)
    x = z * np.float32([100.0, 100.0, 1.0]) + np.float32([1000.0, -500.0, 7.0])
    return PrequentialStream("toy", x.astype(np.float32), y, 2, {"samples": 600})


def test_standardize_reaches_the_learner_and_the_budget(raw_units, one_thread):
    raw = run_prequential_stream(_cfg(lr=0.01, standardize=False), raw_units, "er", seed=0)
    std = run_prequential_stream(_cfg(lr=0.01, standardize=True), raw_units, "er", seed=0)
    assert "standardizer" in std["memory_report"]["parts"] and "standardizer" not in raw["memory_report"]["parts"]
    # count + mean + m2 in float64 for 3 features: charged to the fixed state, the buffer keeps its 50 samples
    assert std["budget_bytes"] - raw["budget_bytes"] == 8 + 2 * 3 * 8
    # (the bytes of 50 samples of 3 float32 features and an int64 label; two classes store their label in 1 byte)
    # (stored in the learner's default storage, float16)
    assert std["buffer_capacity"] == raw["buffer_capacity"] == 50 * (3 * 4 + 8) // (3 * 2 + 1)
    assert std["prequential_acc"] > 0.85 > raw["prequential_acc"]


def test_standardize_and_storage_default_to_the_learners_own():
    cfg = BenchConfig(stream="sea", methods=["er"]).resolved()
    assert cfg.standardize is None and cfg.storage is None  # unset: the learner's defaults apply


def test_cli_standardize_is_stated(tmp_path, one_thread):
    out = tmp_path / "out.json"
    for flag, text in (("--standardize", "inputs standardised online"), ("--no-standardize", "raw inputs")):
        res = CliRunner().invoke(app, ["bench", "--stream", "sea", "--scale", "0.01", "--methods", "er,no-change",
                                       "--device", "cpu", flag, "--json", str(out)])
        assert res.exit_code == 0, res.output
        assert text in res.output
        doc = json.loads(out.read_text())
        assert doc["config"]["standardize"] is (flag == "--standardize")
        assert ("standardizer" in doc["methods"]["er"]["memory_report"]["parts"]) is (flag == "--standardize")
