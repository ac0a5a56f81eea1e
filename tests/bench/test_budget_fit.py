import itertools

import pytest

from edge_cl.bench.budget_fit import Timings, load_fit_config, run_fit, time_learner
from edge_cl.bench.fit_report import fit_report_markdown
from edge_cl.bench.fit_sweep import run_sweep

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
    doc = run_fit(load_fit_config(_write(tmp_path), repeats=2), steps=20)
    assert doc["fits"] is True and doc["reasons"] == []
    m = doc["measured"]
    assert m["used_bytes"] <= m["budget_bytes"] == 100_000 and m["buffer_capacity"] > 0
    assert m["repeats"] == 2 and m["steps_timed"] == 40 and m["predict_ms_p99"] > 0
    text = fit_report_markdown(doc)
    assert text.startswith("**FITS**") and "2 repeats" in text and "predict latency" in text


class FakeClock:
    """Each timed step reads the clock three times: predict takes 2 ms, learn 5 ms, whatever is between 0."""

    def __init__(self):
        self.t, self.steps = 0.0, itertools.cycle((0.0, 0.002, 0.005))

    def __call__(self):
        self.t += next(self.steps)
        return self.t


def test_time_learner_times_predict_and_learn_per_batch_with_the_given_clock(tmp_path, one_thread):
    fit = load_fit_config(_write(tmp_path))
    t = time_learner(fit.model, fit.learner, fit.batch, steps=7, repeats=3, clock=FakeClock())
    assert [len(r) for r in t.learn_s] == [7, 7, 7] and [len(r) for r in t.predict_s] == [7, 7, 7]
    assert {round(v, 9) for r in t.learn_s for v in r} == {0.005}
    assert {round(v, 9) for r in t.predict_s for v in r} == {0.002}


def _cost_model(learn_ms, predict_ms=0.5, repeats=3, steps=50):
    """A deterministic measurement: every step costs ``learn_ms(learner_kwargs)``; the state fills its budget."""
    def measure(kw):
        ms = learn_ms(kw)
        return Timings([[ms / 1e3] * steps] * repeats, [[predict_ms / 1e3] * steps] * repeats,
                       {"budget_bytes": kw["budget_bytes"], "used_bytes": kw["budget_bytes"], "buffer_capacity": 1})
    return measure


def test_verdict_compares_the_bound_with_the_budget(tmp_path):
    fit = load_fit_config(_write(tmp_path), latency_budget_ms=4.0, rss_budget_mb=50.0, repeats=3)
    ok = run_fit(fit, measure=_cost_model(lambda kw: 4.0), rss_mb=lambda: 49.0)
    assert ok["fits"] and ok["measured"]["latency_ms_p99_upper"] == pytest.approx(4.0)
    slow = run_fit(fit, measure=_cost_model(lambda kw: 4.01), rss_mb=lambda: 51.0)
    assert not slow["fits"]
    assert [r.split(":")[0] for r in slow["reasons"]] == ["latency", "rss"]
    assert "95% confidence, 3 repeats" in slow["reasons"][0]


def test_does_not_fit_latency(tmp_path, one_thread):
    fit = load_fit_config(_write(tmp_path), latency_budget_ms=1e-6)
    doc = run_fit(fit, steps=20, measure=_cost_model(lambda kw: 1.0))
    assert doc["fits"] is False and any(r.startswith("latency") for r in doc["reasons"])
    assert "DOES NOT FIT" in fit_report_markdown(doc)


def test_does_not_fit_memory(tmp_path, one_thread):
    doc = run_fit(load_fit_config(_write(tmp_path, budget=2048), repeats=1), steps=5)
    assert doc["fits"] is False and any(r.startswith("memory") for r in doc["reasons"])


def test_does_not_fit_rss(tmp_path, one_thread):
    p = _write(tmp_path, bench="[bench]\nlatency_budget_ms = 10000.0\nrss_budget_mb = 1.0")
    doc = run_fit(load_fit_config(p, repeats=1), steps=5)
    assert doc["fits"] is False and any(r.startswith("rss") for r in doc["reasons"])
    flag = run_fit(load_fit_config(_write(tmp_path), rss_budget_mb=1.0, repeats=1), steps=5)  # --rss-budget-mb
    assert flag["rss_budget_mb"] == 1.0 and any(r.startswith("rss") for r in flag["reasons"])


def test_sweep_on_the_real_learner_names_the_largest_pair(tmp_path, one_thread):
    fit = load_fit_config(_write(tmp_path, budget=60_000), repeats=2)
    doc = run_sweep(fit, steps=5, replay=(2, 8))
    rows = {r["replay_batch"]: r for r in doc["sweep"]}
    assert set(rows) == {2, 4, 8}  # the configured replay batch (4) joins the ones asked for; never 0
    assert rows[4]["buffer_within_bytes"] == doc["measured"]["buffer_capacity"]  # searched, not from a list
    assert doc["best"]["largest_buffer_that_fits"] == rows[2]["buffer_within_bytes"]
    assert "Largest configuration that fits" in fit_report_markdown(doc)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="latency_budget_ms"):
        load_fit_config(_write(tmp_path, bench=""))
    with pytest.raises(ValueError, match="unknown key"):
        load_fit_config(_write(tmp_path, bench="[bench]\nlatency_budget_ms = 1.0\nlatency = 2"))
    with pytest.raises(ValueError, match="latency_budget_ms"):
        load_fit_config(_write(tmp_path, bench="[bench]\nlatency_budget_ms = -1.0"))
    with pytest.raises(ValueError, match="--rss-budget-mb"):
        load_fit_config(_write(tmp_path), rss_budget_mb=0.0)
    with pytest.raises(ValueError, match="--repeats"):
        load_fit_config(_write(tmp_path), repeats=0)
    with pytest.raises(ValueError, match="cannot be read"):
        load_fit_config(tmp_path / "nope.toml")
