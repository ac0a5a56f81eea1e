"""Tests of the demo (issue #13, part 1): the concepts come back, the view shows bytes apart from buffer fill,
and `edge-cl demo` shows that edge_cl remembers the first concept where plain fine-tuning forgets it."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_cl.config import load_config
from edge_cl.daemon.demo import (
    CHANNELS,
    CLASSES,
    EDGE,
    FINETUNE,
    SCHEDULE,
    WINDOW,
    ConceptSensor,
    EmbeddedBroker,
    Score,
    SensorPublisher,
    _view,
    real_broker_toml,
)

RETENTION = re.compile(r"edge_cl remembers A: ([0-9.]+)% / fine-tuning: ([0-9.]+)%")


def class_levels(sensor: ConceptSensor, concept: str, n: int = 400) -> np.ndarray:
    xs: list[list[np.ndarray]] = [[] for _ in range(CLASSES)]
    for _ in range(n):
        x, y = sensor.sample(concept)
        xs[y].append(x)
    return np.stack([np.mean(v, axis=0) for v in xs]).reshape(CLASSES, CHANNELS, WINDOW).mean(2)


def test_sensor_shapes_and_seeding() -> None:
    a, b = ConceptSensor(np.random.default_rng(3)), ConceptSensor(np.random.default_rng(3))
    xa, ya = a.sample("A")
    xb, yb = b.sample("A")
    assert xa.shape == (CHANNELS * WINDOW,) and xa.dtype == np.float32
    np.testing.assert_array_equal(xa, xb)
    assert ya == yb


def test_stream_returns_to_the_first_concept_and_concepts_disagree() -> None:
    assert [ConceptSensor.phase(p)[1] for p in (0.1, 0.3, 0.6, 0.9, 1.0)] == ["A", "B", "C", "A", "A"]
    assert SCHEDULE[0] == SCHEDULE[-1]
    s = ConceptSensor(np.random.default_rng(0), noise=0.0)
    a, b, a2 = class_levels(s, "A"), class_levels(s, "B"), class_levels(s, "A")
    np.testing.assert_allclose(a, a2, atol=0.2)        # the same concept when it comes back
    assert np.abs(a - b).mean() > 1.0                   # another concept maps classes elsewhere


def test_view_shows_state_bytes_apart_from_buffer_fill_and_no_drift_counter() -> None:
    from rich.console import Console

    pub = SensorPublisher.__new__(SensorPublisher)  # the view reads only these fields
    pub.sensor, pub.progress, pub.published, pub.changes, pub.window = None, 0.05, 100, [(0, "A", 0.0)], None
    pub.scores = {EDGE: Score(), FINETUNE: Score()}
    st = {"predictions": 100, "samples_learned": 90, "consolidations": 1, "buffer_fill": 0.17, "buffer_size": 282,
          "buffer_capacity": 1660, "reserved": 399_920, "budget": 400_000, "spool_depth": 0, "update_ms": 1.0}
    out = io.StringIO()
    Console(file=out, width=200).print(_view({EDGE: st, FINETUNE: {**st, "buffer_capacity": 0}}, pub, 1.5, 60,
                                             "mosquitto", "http://127.0.0.1:1/"))
    text = out.getvalue()
    assert "drifts detected" not in text and "consolidations (loss plateaus)" in text
    assert "282 / 1660 samples" in text and "17.0 %" in text and "400 kB / 400 kB" in text
    assert "changes so far: 0" in text and "status page: http://127.0.0.1:1/" in text


def test_written_config_runs_as_is(tmp_path: Path) -> None:
    path = tmp_path / "edge-cl.toml"
    path.write_text(real_broker_toml())
    cfg = load_config(path)
    assert cfg.learner.method == "der++" and cfg.checkpoint.dir == tmp_path / "state/checkpoints"


def test_embedded_broker_choice_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="broker="):
        EmbeddedBroker(tmp_path, "rabbitmq")


@pytest.mark.integration
@pytest.mark.slow
def test_demo_remembers_the_first_concept_where_fine_tuning_forgets(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "edge_cl.cli.main", "demo", "--duration", "12",
                          "--out", str(tmp_path / "out")], check=False, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = RETENTION.search(res.stdout)
    assert m, res.stdout[-3000:]
    edge, finetune = float(m.group(1)), float(m.group(2))
    assert edge > 60 and edge > finetune + 25, (edge, finetune)
    svg = (tmp_path / "out" / "accuracy.svg").read_text()
    assert svg.count("<polyline") == 2 and "A again" in svg and "retention window" in svg
    assert (tmp_path / "out" / "summary.json").is_file()
    assert f"plot: {tmp_path / 'out' / 'accuracy.svg'}" in res.stdout
    last = res.stdout.strip().splitlines()[-1]
    assert "edge-cl run" in last and str(tmp_path / "out" / "edge-cl.toml") in last, last


@pytest.mark.integration
@pytest.mark.slow
def test_demo_ctrl_c_stops_cleanly_with_results_so_far(tmp_path: Path) -> None:
    """Also: with stdout a pipe (no terminal for the live table) progress lines come while it runs."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_cl.cli.main", "demo", "--duration", "60",
                             "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    head = [proc.stdout.readline(), proc.stdout.readline()]  # blocks until printed: nothing is held to the end
    assert proc.poll() is None, head
    assert "status page: http://" in head[0] and re.match(r"\[ *\d+\.\d / 60 s\] concept A: published \d+", head[1]), head
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = "".join(head) + out
    assert proc.returncode == 130, out[-3000:] + err[-3000:]
    assert "interrupted after" in out and "Traceback" not in err, out[-3000:] + err[-3000:]
    assert "before concept A came back" in out and (tmp_path / "out" / "accuracy.svg").is_file()


@pytest.mark.integration
def test_daemon_over_mqtt_311_with_embedded_amqtt(tmp_path: Path) -> None:
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


def test_readme_and_docs_quote_the_demo_default_duration() -> None:
    """README once called the demo "a 12 s run" while it ran 60 s by default."""
    import inspect

    from edge_cl.cli.demo import demo

    default = int(inspect.signature(demo).parameters["duration"].default)
    root = Path(__file__).resolve().parents[2]
    quoted = [(f.name, int(m.group(1) or m.group(2)))
              for f in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
              for m in re.finditer(r"(\d+) ?s(?:econds?)? (?:run|demo)\b|demo --duration (\d+)", f.read_text())]
    assert all(n == default for _, n in quoted), quoted
