"""benchmarks/summary.py: one methods x runs table from bench JSON documents."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _summary_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_summary", ROOT / "benchmarks" / "summary.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _doc(stream: str, kind: str, methods: dict[str, dict[str, float]]) -> dict[str, object]:
    return {"stream": {"name": stream, "kind": kind}, "config": {"protocol": "edge", "seed": 0, "storage": "uint8"},
            "methods": methods}


def test_table_has_a_row_per_run_best_in_bold_and_samples_fitted(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(_doc("rotated-mnist", "tasks", {
        "er": {"acc": 0.9, "acc_std": 0.01, "buffer_capacity": 1984, "seeds": [0, 1]},
        "der++": {"acc": 0.93, "acc_std": 0.004, "buffer_capacity": 1935, "seeds": [0, 1]},
        "joint": {"acc": 0.95}})))
    b = tmp_path / "b.json"
    b.write_text(json.dumps(_doc("elec2", "prequential", {"er": {"prequential_acc": 0.89, "buffer_capacity": 500}})))
    text = _summary_module().summarize([a, b])
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| run | er | der++ |"  # baselines (joint) are not methods of the table
    assert "**93.00 ± 0.40** (1935)" in rows[1] and "90.00 ± 1.00 (1984)" in rows[1] and "uint8 storage" in rows[1]
    assert rows[2].endswith("| **89.00** (500) | - |")


def test_run_label_names_method_settings_and_cbrs(tmp_path):
    doc = _doc("split-mnist", "tasks", {"der++": {"acc": 0.94, "buffer_capacity": 1935, "seeds": [0]}})
    doc["config"].update({"method_params": {"der_shared_draw": False, "der_alpha": 0.3}, "class_balanced": True,
                          "max_grad_norm": 5.0})
    a = tmp_path / "a.json"
    a.write_text(json.dumps(doc))
    row = next(line for line in _summary_module().summarize([a]).splitlines() if line.startswith("| split"))
    assert "der_shared_draw=false der_alpha=0.3" in row and "class-balanced" in row and "max_grad_norm 5.0" in row


def test_section_intro_names_method_settings():
    from edge_cl.bench.report import markdown_table

    doc = {"stream": {"name": "split-mnist", "kind": "tasks", "setting": "class-il", "num_tasks": 5, "samples": 10,
                      "input_shape": [784], "num_classes": 10},
           "config": {"scale": 1.0, "protocol": "der", "batch": 10, "replay_batch": 10, "lr": 0.1, "repeat": 1,
                      "seed": 0, "method_params": {"der_shared_draw": False}},
           "budget": {"note": "test"}, "methods": {}}
    assert "method settings der_shared_draw=false;" in markdown_table(doc)
    doc["config"]["method_params"] = {}
    assert "method settings" not in markdown_table(doc)


def test_paired_table_differences_each_seed_with_er(tmp_path):
    def runs(values):
        return [{"seed": s, "acc": v} for s, v in zip((0, 1, 2), values)]

    a = tmp_path / "a.json"
    a.write_text(json.dumps(_doc("rotated-mnist", "tasks", {
        "er": {"acc": 0.9, "runs": runs([0.90, 0.80, 0.70])},
        "er+ewc": {"acc": 0.8, "runs": runs([0.91, 0.79, 0.72])},
        "der++": {"acc": 0.9, "runs": runs([0.95])}})))
    b = tmp_path / "b.json"
    b.write_text(json.dumps(_doc("sea", "prequential", {"der++": {"prequential_acc": 0.9}})))  # no er: left out
    c = tmp_path / "c.json"   # one seed: no per-seed list, the run's own figures
    c.write_text(json.dumps(_doc("elec2", "prequential", {"er": {"prequential_acc": 0.89},
                                                          "er+ewc": {"prequential_acc": 0.885}})))
    text = _summary_module().paired([a, b, c])
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| run | er+ewc | der++ |" and len(rows) == 3
    assert "| +0.67 ± 1.53 (2/3) | +5.00 (1/1) |" in rows[1]
    assert rows[2].endswith("| -0.50 (0/1) | - |")
