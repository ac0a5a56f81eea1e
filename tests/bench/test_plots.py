import pytest

from edge_cl.bench.plots import write_plots
from edge_cl.bench.report import markdown_table
from edge_cl.bench.runner import BenchConfig, run_task_stream
from edge_cl.bench.schema import SCHEMA


def test_plots_and_table(tmp_path, tiny_task_stream, one_thread):
    pytest.importorskip("matplotlib", reason="plots need the [bench] extra (matplotlib)")
    cfg = BenchConfig(stream="rotated-mnist", methods=["er"], device="cpu", budget_samples=20)
    r = run_task_stream(cfg, tiny_task_stream, "er", seed=0)
    doc = {"schema": SCHEMA, "stream": {"name": "tiny", "kind": "tasks", "setting": "domain-il", "num_tasks": 3,
                                        "samples": r["samples"], "input_shape": [64], "num_classes": 10},
           "config": {"scale": 0.5, "protocol": "edge", "batch": 10, "replay_batch": 10, "lr": 0.1, "repeat": 1,
                      "seed": 0, "model": None},
           "budget": {"note": "test"}, "methods": {"er": r}, "peers": {}}
    files = write_plots(doc, tmp_path / "plots")
    names = sorted(p.name for p in files)
    assert names == ["latency_hist.png", "matrix_er.png", "stream_accuracy.png"]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in files)
    table = markdown_table(doc)
    assert "| er |" in table and "ACC %" in table
    assert f"{r['acc'] * 100:.2f}" in table
