"""The sweep's logic on a deterministic cost model: no wall time is read."""

from itertools import pairwise

import pytest

from edge_cl.bench.budget_fit import Timings, load_fit_config
from edge_cl.bench.fit_report import fit_report_markdown
from edge_cl.bench.fit_sweep import MonotoneCost, largest_within, run_sweep
from edge_cl.bench.runner import build_model
from edge_cl.learner import OnlineLearner
from tests.bench.test_budget_fit import CONFIG as TEMPLATE

CONFIG = TEMPLATE.format(budget=40000, bench="[bench]\nlatency_budget_ms = 5.0\nbatch = 4")


@pytest.fixture
def fit(tmp_path):
    p = tmp_path / "device.toml"
    p.write_text(CONFIG)
    return load_fit_config(p, repeats=3)


def _measure(cost, calls=None):
    """Every step costs ``cost(replay_batch, budget_bytes)`` ms; ``calls`` records the settings timed."""
    def measure(kw):
        if calls is not None:
            calls.append((kw["replay_batch"], kw["budget_bytes"]))
        s = [[cost(kw["replay_batch"], kw["budget_bytes"]) / 1e3] * 20] * 3
        return Timings(s, [[0.0005] * 20] * 3,
                       {"budget_bytes": kw["budget_bytes"], "used_bytes": kw["budget_bytes"], "buffer_capacity": 1})
    return measure


def _required(fit, r):
    model = build_model(fit.model, 0)
    kw = {k: v for k, v in fit.learner.items() if k not in ("budget_bytes", "replay_batch", "device")}
    return lambda n: OnlineLearner.required_bytes(model, n, replay_batch=r, **kw)


def _largest_below(required, budget, start):
    """Linear scan down from ``start``: the reference the bisection is checked against."""
    n = start
    while required(n) > budget:
        n -= 1
    return n


def test_largest_within_is_exact_without_a_list_of_sizes():
    assert largest_within(lambda n: 100 + 8 * n, 1000) == 112
    assert largest_within(lambda n: 100 + 8 * n, 99) is None
    assert largest_within(lambda n: 100, 1000) > 10**9  # a budget that holds any buffer stops at the cap


def test_monotone_cost_takes_the_max_over_smaller_settings():
    c = MonotoneCost()
    c.add(1, 100, 7.0)
    c.add(2, 50, 1.0)
    c.add(2, 200, 2.0)
    assert c.cost(2, 50) == 1.0 and c.cost(2, 100) == 7.0 and c.cost(2, 200) == 7.0 and c.cost(1, 50) is None


def test_a_larger_replay_never_reads_cheaper(fit):
    """Measured noise says replay 2 is slow and replay 5 fast: the verdicts still only go from yes to no."""
    measured = {1: 1.0, 2: 9.0, 4: 1.0, 5: 1.0, 10: 1.0, 20: 1.0}
    calls = []
    doc = run_sweep(fit, replay=(1, 2, 5, 10, 20), measure=_measure(lambda r, b: measured[r], calls))
    verdicts = [row["latency_fits"] for row in doc["sweep"]]
    assert verdicts == [True, False, False, False, False, False]
    assert all(a >= b for a, b in pairwise(verdicts))  # monotone
    assert {r for r, _ in calls} <= {1, 2, 4}  # nothing past the first replay that fails at its smallest buffer
    assert doc["best"]["replay_batch"] == 1
    assert doc["sweep"][3]["note"].startswith("not timed")
    text = fit_report_markdown(doc)
    assert "Monotone by construction" in text and "| 128 |" not in text


def test_buffer_is_bisected_up_to_what_the_budget_holds(fit):
    """Latency grows with the buffer's bytes: the sweep finds the largest buffer within 2% of the true one."""
    budget = int(fit.learner["budget_bytes"])
    doc = run_sweep(fit, replay=(1, 4), measure=_measure(lambda r, b: 4.0 * b / 30_000))
    rows = {row["replay_batch"]: row for row in doc["sweep"]}
    for r in (1, 4):
        req, held = _required(fit, r), rows[r]["buffer_within_bytes"]
        assert req(held) <= budget < req(held + 1)  # what budget_bytes holds, exactly
        true = _largest_below(req, 37_500, held)  # the largest buffer whose bytes keep latency <= 5 ms
        assert true < held
        found = rows[r]["largest_buffer_that_fits"]
        assert found <= true and true - found <= max(1, int(0.02 * held))
        assert all(t["effective_ms"] >= t["measured_ms"] for t in rows[r]["tried"])
    assert rows[4]["largest_buffer_that_fits"] <= rows[1]["largest_buffer_that_fits"]  # never more for more replay
    assert doc["best"]["largest_buffer_that_fits"] == rows[1]["largest_buffer_that_fits"]


def test_the_configured_setting_is_timed_once_and_agrees_with_the_verdict(fit):
    calls = []
    doc = run_sweep(fit, replay=(1, 8), measure=_measure(lambda r, b: 1.0 + r / 4, calls))
    assert [c for c in calls if c[0] == 4] == [(4, 40_000)]  # the plain fit's measurement, reused by the sweep
    row = next(r for r in doc["sweep"] if r["replay_batch"] == 4)
    assert row["latency_ms_p99_upper"] == doc["measured"]["latency_ms_p99_upper"] == pytest.approx(2.0)


def test_three_identical_sweeps_agree(fit):
    cost = _measure(lambda r, b: 0.5 + 0.3 * r + b / 20_000)
    docs = [run_sweep(fit, replay=(1, 2, 5, 10, 20), measure=cost) for _ in range(3)]
    assert docs[0]["sweep"] == docs[1]["sweep"] == docs[2]["sweep"] and docs[0]["best"] == docs[2]["best"]
