import pytest

from edge_cl.bench.budget_fit import fit_report_markdown, load_fit_config, run_fit, run_sweep

CONFIG = """
[input]
dim = 8
num_classes = 3
[model]
type = "mlp"
input_dim = 8
hidden = [16]
num_classes = 3
[learner]
budget_bytes = {budget}
importance = "mas"
replay_batch = 4
device = "cpu"
{bench}
"""


def _write(tmp_path, budget=100_000, bench="[bench]\nlatency_budget_ms = 10000.0\nbatch = 4"):
    p = tmp_path / "device.toml"
    p.write_text(CONFIG.format(budget=budget, bench=bench))
    return p


def test_fits_when_built_to_fit(tmp_path, one_thread):
    doc = run_fit(load_fit_config(_write(tmp_path)), steps=20)
    assert doc["fits"] is True and doc["reasons"] == []
    m = doc["measured"]
    assert m["used_bytes"] <= m["budget_bytes"] == 100_000 and m["buffer_capacity"] > 0
    assert fit_report_markdown(doc).startswith("**FITS**")


def test_does_not_fit_latency(tmp_path, one_thread):
    fit = load_fit_config(_write(tmp_path), latency_budget_ms=1e-6)
    doc = run_fit(fit, steps=20)
    assert doc["fits"] is False and any(r.startswith("latency") for r in doc["reasons"])
    assert "DOES NOT FIT" in fit_report_markdown(doc)


def test_does_not_fit_memory(tmp_path, one_thread):
    doc = run_fit(load_fit_config(_write(tmp_path, budget=2048)), steps=5)
    assert doc["fits"] is False and any(r.startswith("memory") for r in doc["reasons"])


def test_does_not_fit_rss(tmp_path, one_thread):
    p = _write(tmp_path, bench="[bench]\nlatency_budget_ms = 10000.0\nrss_budget_mb = 1.0")
    doc = run_fit(load_fit_config(p), steps=5)
    assert doc["fits"] is False and any(r.startswith("rss") for r in doc["reasons"])


def test_sweep_names_the_largest_fitting_pair(tmp_path, one_thread):
    fit = load_fit_config(_write(tmp_path, budget=60_000))
    doc = run_sweep(fit, steps=5, replay=(0, 2, 8), buffers=(0, 10, 100, 1000, 100_000))
    rows = {r["replay_batch"]: r for r in doc["sweep"]}
    assert rows[8]["largest_buffer_that_fits"] in (100, 1000)  # 100k samples x 40 B cannot fit in 60 kB
    assert 0 not in rows  # replay 0 would be another method: a replaying method is swept from 1
    assert doc["best"]["replay_batch"] in (2, 8) and doc["best"]["largest_buffer_that_fits"] >= 100
    assert "Largest configuration that fits" in fit_report_markdown(doc)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="latency_budget_ms"):
        load_fit_config(_write(tmp_path, bench=""))
    with pytest.raises(ValueError, match="unknown key"):
        load_fit_config(_write(tmp_path, bench="[bench]\nlatency_budget_ms = 1.0\nlatency = 2"))
    with pytest.raises(ValueError, match="latency_budget_ms"):
        load_fit_config(_write(tmp_path, bench="[bench]\nlatency_budget_ms = -1.0"))
    with pytest.raises(ValueError, match="cannot be read"):
        load_fit_config(tmp_path / "nope.toml")
