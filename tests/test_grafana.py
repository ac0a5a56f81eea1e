"""deploy/grafana's dashboard names only metrics the daemon exports (issue #13, part 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edge_cl.daemon.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "edge-cl-dashboard.json"


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Series names the daemon exports (a labelled counter has no sample until a label is used)."""
    return {f.name + suffix for f in Metrics().registry.collect() for suffix in SUFFIXES.get(f.type, ("",))}


def test_every_metric_in_the_dashboard_exists() -> None:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    named = {n for e in exprs for n in re.findall(r"\bedge_cl_\w+", e)}
    assert len(named) >= 10
    missing = named - exported_names()
    assert not missing, f"the dashboard queries metrics the daemon does not export: {sorted(missing)}"


def test_the_check_catches_a_wrong_name() -> None:
    assert "edge_cl_samples_learned_total" in exported_names()
    assert "edge_cl_samples_learned" not in exported_names()  # counters are exported with _total
