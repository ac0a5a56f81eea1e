"""Plots of a budget fit (`edge-cl bench --config ... --plots`): the configured model's latency and the sweep."""

import json

import pytest
from typer.testing import CliRunner

from edge_cl.bench.budget_fit import load_fit_config, run_fit
from edge_cl.bench.fit_plots import write_fit_plots
from edge_cl.bench.fit_sweep import run_sweep
from edge_cl.cli.main import app
from tests.bench.test_budget_fit import _cost_model, _write
from tests.bench.test_cli_bench import _device

pytest.importorskip("matplotlib", reason="plots need the [bench] extra (matplotlib)")


def _png(p):
    return p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG"


def test_fit_and_sweep_plots_from_a_cost_model(tmp_path):
    fit = load_fit_config(_write(tmp_path), latency_budget_ms=4.0, repeats=3)
    doc = run_fit(fit, measure=_cost_model(lambda kw: 3.0), rss_mb=lambda: 10.0)
    assert len(doc["measured"]["learn_ms"]) == len(doc["measured"]["predict_ms"]) == 150  # 3 repeats x 50 steps
    assert doc["model"]["type"] == "mlp"
    files = write_fit_plots(doc, tmp_path / "fit")
    assert [p.name for p in files] == ["fit_latency.png"] and _png(files[0])
    swept = run_sweep(fit, measure=_cost_model(lambda kw: 1.0 + kw["replay_batch"] / 10), replay=(1, 64))
    files = write_fit_plots(swept, tmp_path / "sweep")
    assert [p.name for p in files] == ["fit_latency.png", "fit_sweep.png"] and all(_png(p) for p in files)


def test_a_configuration_that_cannot_be_built_writes_no_plot(tmp_path):
    doc = {"latency_budget_ms": 5.0, "fits": False, "measured": None, "sweep": []}
    assert write_fit_plots(doc, tmp_path / "none") == []


@pytest.mark.parametrize("spelling", [["bench"], ["bench", "fit"]])
def test_bench_config_with_plots_writes_them(tmp_path, one_thread, spelling):
    plots, out = tmp_path / "plots", tmp_path / "fit.json"
    res = CliRunner().invoke(app, [*spelling, "--config", _device(tmp_path), "--fit-steps", "5", "--repeats", "2",
                                   "--plots", str(plots), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote 1 plot(s) into {plots}" in res.output
    assert _png(plots / "fit_latency.png")
    assert json.loads(out.read_text())["model"]["hidden"] == [8]  # the config's model, as plotted
