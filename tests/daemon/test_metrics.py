"""The daemon's Prometheus metrics export the fleet channel's counters."""

from __future__ import annotations

import urllib.request

from edge_cl.daemon.metrics import Metrics
from edge_cl.fleet.stats import FleetStats


def test_fleet_counters_are_exported_at_each_scrape() -> None:
    m, stats = Metrics(), FleetStats()
    assert m.value("edge_cl_fleet_rounds_joined_total") == 0
    assert m.registry.get_sample_value("edge_cl_fleet_merges_total") is None  # no fleet: no fleet series
    m.watch_fleet(stats)
    stats.joined(1000)
    stats.joined(500)
    stats.skipped()
    stats.received(700)
    stats.merged()
    stats.failed("refused")
    stats.failed("timeout")
    stats.failed("timeout")
    assert m.value("edge_cl_fleet_rounds_joined_total") == 2
    assert m.value("edge_cl_fleet_rounds_skipped_total") == 1
    assert m.value("edge_cl_fleet_bytes_sent_total") == 1500
    assert m.value("edge_cl_fleet_bytes_received_total") == 700
    assert m.value("edge_cl_fleet_merges_total") == 1
    assert m.value("edge_cl_fleet_last_merge_timestamp_seconds") == stats.last_merge_unix > 0
    assert m.value("edge_cl_fleet_merge_failures_total", reason="refused") == 1
    assert m.value("edge_cl_fleet_merge_failures_total", reason="timeout") == 2
    assert m.value("edge_cl_fleet_merge_failures_total", reason="bad_body") == 0
    stats.merged()
    assert m.value("edge_cl_fleet_merges_total") == 2  # read live, not copied once

    server, port = m.serve("127.0.0.1", 0)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "edge_cl_fleet_rounds_joined_total 2.0" in text
    assert 'edge_cl_fleet_merge_failures_total{reason="timeout"} 2.0' in text
