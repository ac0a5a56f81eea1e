"""Tests of the demo: the simulated sensor drifts as documented, and `edge-cl demo --duration 10` learns."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from edge_cl.daemon.demo import CHANNELS, CLASSES, WINDOW, DriftingSensor, EmbeddedBroker


def class_means(sensor: DriftingSensor, progress: float, n: int = 400) -> np.ndarray:
    xs: list[list[np.ndarray]] = [[] for _ in range(CLASSES)]
    for _ in range(n):
        x, y = sensor.sample(progress)
        xs[y].append(x)
    return np.stack([np.mean(v, axis=0) for v in xs])


def test_sensor_shapes_and_seeding() -> None:
    a, b = DriftingSensor(np.random.default_rng(3)), DriftingSensor(np.random.default_rng(3))
    xa, ya = a.sample(0.1)
    xb, yb = b.sample(0.1)
    assert xa.shape == (CHANNELS * WINDOW,) and xa.dtype == np.float32
    np.testing.assert_array_equal(xa, xb)
    assert ya == yb


def test_abrupt_drift_swaps_classes_0_and_1() -> None:
    s = DriftingSensor(np.random.default_rng(0), noise=0.0)
    before, after = class_means(s, 0.1), class_means(s, 0.5)
    # the sine phase is random, so compare channel levels (window means)
    lv = lambda m: m.reshape(CLASSES, CHANNELS, WINDOW).mean(2)
    np.testing.assert_allclose(lv(after)[0], lv(before)[1], atol=0.2)
    np.testing.assert_allclose(lv(after)[2], lv(before)[2], atol=0.2)
    gradual = class_means(s, 0.95)
    assert (lv(gradual)[2] - lv(before)[2]).mean() > 1.0  # offset grows in the gradual phase
    assert s.phase(0.1) == "initial" and "abrupt" in s.phase(0.5) and "gradual" in s.phase(0.9)


def test_embedded_broker_choice_is_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="broker="):
        EmbeddedBroker(tmp_path, "rabbitmq")


@pytest.mark.integration
@pytest.mark.slow
def test_demo_cli_learns_above_chance() -> None:
    res = subprocess.run([sys.executable, "-m", "edge_cl.cli.main", "demo", "--duration", "10"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = re.search(r"prequential accuracy: ([0-9.]+) \(chance ([0-9.]+)\)", res.stdout)
    assert m, res.stdout[-3000:]
    acc, chance = float(m.group(1)), float(m.group(2))
    assert acc > chance + 0.15, (acc, chance)


@pytest.mark.integration
def test_daemon_over_mqtt_311_with_embedded_amqtt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """amqtt speaks MQTT 3.1.1 only: the daemon's protocol key and clean_session=False path."""
    pytest.importorskip("amqtt")
    from edge_cl.daemon.codec import encode_json
    from tests.broker import daemon_toml, publish_all
    from tests.daemon.test_service_broker import running, samples, wait_until

    emb = EmbeddedBroker(tmp_path, "amqtt")
    emb.start()
    try:
        cfg = daemon_toml(tmp_path / "d", emb.port, broker_extra='protocol = "3.1.1"')
        with running(cfg) as d:
            assert wait_until(lambda: d.metrics.value("edge_cl_broker_connected") == 1, 10)
            data = samples(20)
            publish_all(emb.port, "t/samples", [encode_json(i, x, y) for i, x, y in data], v5=False)
            assert wait_until(lambda: d.progress.learned == 20, 15), d.progress.learned
    finally:
        emb.stop()
