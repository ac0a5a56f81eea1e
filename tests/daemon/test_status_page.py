"""The daemon's status page (issue #13, part 2): served beside /metrics, read-only, off by default on
non-loopback hosts, and rendered by a real headless Chromium with a curve after a short stream."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge_cl.config import MetricsConfig
from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.metrics import Metrics
from edge_cl.daemon.status_page import StatusHistory, is_loopback, page_html
from tests.broker import Mosquitto, daemon_toml, publish_all

ARTIFACTS = Path(os.environ.get("EDGE_CL_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def find_chromium() -> str | None:
    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and os.access(p, os.X_OK)), None)


@pytest.fixture
def chromium() -> str:
    found = find_chromium()
    if found is None:
        reason = "chromium is not installed; apt-get install chromium (Debian) to run the status page in a browser"
        if os.environ.get("EDGE_CL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EDGE_CL_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return found


def test_page_is_on_by_default_only_on_loopback() -> None:
    assert MetricsConfig().page_enabled
    assert MetricsConfig(host="::1").page_enabled and MetricsConfig(host="localhost").page_enabled
    assert not MetricsConfig(host="0.0.0.0").page_enabled
    assert MetricsConfig(host="0.0.0.0", status_page=True).page_enabled
    assert not MetricsConfig(status_page=False).page_enabled
    assert not is_loopback("192.168.1.10")


def test_history_is_bounded_and_marks_consolidations() -> None:
    h = StatusHistory(every=1, max_points=8)
    for i in range(1, 101):
        h.on_learn(i * 4, 3, 4, consolidated=i == 50)
    got = h.to_json()
    assert 4 <= len(got["points"]) <= 8
    assert got["points"][-1]["prequential"] == pytest.approx(0.75)
    assert got["marks"] == [{"learned": 200, "kind": "consolidation", "t": got["marks"][0]["t"]}]


def test_latency_quantiles_are_times_steps_took_not_bucket_edges() -> None:
    h = StatusHistory()
    assert h.latency_ms()["p50"] is None
    # 1.1 ms steps would all fall in Prometheus' (1 ms, 2 ms] bucket: the page once showed p50 = p95 = 2 ms
    for k in range(100):
        h.on_learn(k, 1, 1, False, seconds=0.0011 if k < 90 else 0.0045)
    lat = h.latency_ms()
    assert lat["p50"] == pytest.approx(1.1) and lat["p95"] == pytest.approx(4.5)
    assert lat["mean"] == pytest.approx(0.9 * 1.1 + 0.1 * 4.5) and lat["window"] == lat["steps"] == 100


def test_concept_change_legend_only_with_such_marks() -> None:
    html = page_html().decode()
    legend = re.search(r'<span id="legend-change" hidden>.*?concept change', html, re.DOTALL)
    assert legend, "the legend entry starts hidden"
    assert 'getElementById("legend-change").hidden = !marks.some(m => m.kind !== "consolidation")' in html


def test_same_server_serves_metrics_page_and_json_read_only() -> None:
    m = Metrics()
    server, port = m.serve("127.0.0.1", 0, lambda: {"step": 3, "history": {"points": [], "marks": []}})
    try:
        base = f"http://127.0.0.1:{port}"
        assert b"edge_cl_samples_learned_total" in urllib.request.urlopen(base + "/metrics", timeout=5).read()
        html = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert "status.json" in html and "<script" in html
        assert not re.search(r"(src|href)=\"https?://", html), "the page must not load anything from the network"
        assert json.loads(urllib.request.urlopen(base + "/status.json", timeout=5).read())["step"] == 3
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(base + "/status.json", data=b"x", method="POST"), timeout=5)
        assert err.value.code == 405
    finally:
        server.shutdown()
        server.server_close()
    off, port = Metrics().serve("127.0.0.1", 0, None)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5)
        assert err.value.code == 404 and b"status_page" in err.value.read()
    finally:
        off.shutdown()
        off.server_close()


@pytest.mark.integration
@pytest.mark.broker
@pytest.mark.browser
def test_status_page_in_headless_chromium(broker: Mosquitto, chromium: str, tmp_path: Path) -> None:
    from tests.daemon.test_service_broker import running, samples, wait_until

    cfg = daemon_toml(tmp_path / "d", broker.port)
    cfg.write_text(cfg.read_text().replace("[metrics]\nenabled = false", "[metrics]\nenabled = true\nport = 0"))
    with running(cfg) as d:
        publish_all(broker.port, "t/samples", [encode_json(i, x, y) for i, x, y in samples(300)])
        assert wait_until(lambda: d.progress.learned == 300, 20), d.progress.learned
        time.sleep(0.7)  # the loop publishes the page's snapshot twice a second
        url = f"http://127.0.0.1:{d.metrics_port}/"
        status = json.loads(urllib.request.urlopen(url + "status.json", timeout=5).read())
        assert len(status["history"]["points"]) >= 5
        assert status["buffer"]["size"] > 0 and sum(status["buffer"]["by_class"].values()) == status["buffer"]["size"]
        assert status["latency_ms"]["steps"] > 0 and "non_finite" in status["dead_letters"]
        base = [chromium, *CHROMIUM_FLAGS, "--virtual-time-budget=5000"]
        dom = subprocess.run([*base, f"--user-data-dir={tmp_path / 'chrome-dom'}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=90, check=False)
        assert dom.returncode == 0, dom.stderr[-2000:]
        m = re.search(r'id="curve"[^>]*data-points="(\d+)"', dom.stdout)
        assert m and int(m.group(1)) >= 5, dom.stdout[-3000:]
        assert 'data-series="recent"' in dom.stdout and '<span id="error"></span>' in dom.stdout, dom.stdout[-3000:]
        assert re.search(r'id="legend-change" hidden', dom.stdout), "no source marked a concept change"
        assert re.search(r"p95 \(last \d+ steps\)", dom.stdout), dom.stdout[-3000:]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "status_page.png"
        shot.unlink(missing_ok=True)
        res = subprocess.run([*base, f"--user-data-dir={tmp_path / 'chrome-shot'}", f"--screenshot={shot}",
                              "--window-size=1200,900", url], capture_output=True, text=True, timeout=90, check=False)
        assert res.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, res.stderr[-2000:]
