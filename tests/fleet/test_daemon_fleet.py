"""Three real daemons learn from a real Mosquitto and average what they learned through a real Flower SuperLink
and three SuperNodes, all on 127.0.0.1 and on TLS (a test CA; insecure is covered by test_flower_e2e): samples go
in over MQTT, rounds run, every daemon merges the global model between two steps, and predictions keep flowing
(also while the SuperLink is gone)."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="fleet learning needs Flower: pip install 'edge-cl[fleet]'")

from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.service import Daemon
from edge_cl.fleet import merge, wire
from edge_cl.fleet.local_client import ChannelError, DaemonChannel
from tests.broker import Collector, Mosquitto, daemon_toml, publish_all
from tests.daemon.test_service_broker import running, wait_until
from tests.fleet.flower_procs import Flower
from tests.fleet.helpers import token_file

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.slow]
DEVICES, DIM, CLASSES = 3, 8, 3


def device_samples(device: int, n: int, start: int = 0) -> list[bytes]:
    """``n`` labelled samples of device ``device``'s own part of the stream (its own shifted prototypes)."""
    rng = np.random.default_rng(1000 * device + start)
    protos = np.eye(CLASSES, DIM, dtype=np.float32) * 3 + device
    ys = rng.integers(CLASSES, size=n)
    return [encode_json(f"d{device}-{start + k}", (protos[y] + rng.normal(size=DIM)).astype(np.float32), int(y))
            for k, y in enumerate(ys)]


def device_config(tmp: Path, broker_port: int, device: int, min_new_samples: int = 1) -> tuple[Path, Path]:
    """A daemon config with [fleet] on (channel on any free loopback port) and its own topics; (config, token)."""
    tok = token_file(tmp, f"device{device}.token")
    cfg = daemon_toml(tmp / f"device{device}", broker_port, client_id=f"edge-cl-fleet-{device}",
                      extra=f'\n[fleet]\nenabled = true\nport = 0\ntoken_file = "{tok}"\ntimeout_s = 30\n'
                            f'min_new_samples = {min_new_samples}\n')
    cfg.write_text(cfg.read_text().replace('"t/', f'"d{device}/'))
    return cfg, tok


@contextlib.contextmanager
def fleet_of_daemons(tmp: Path, broker: Mosquitto, min_new_samples: tuple[int, ...] = (1,) * DEVICES
                     ) -> Iterator[tuple[list[Daemon], list[Path], Collector]]:
    """Three daemons running in this process, and a collector of their predictions."""
    configs = [device_config(tmp, broker.port, i, min_new_samples[i]) for i in range(DEVICES)]
    col = Collector(broker.port, [f"d{i}/predictions" for i in range(DEVICES)] + [f"d{i}/dead" for i in
                                                                                  range(DEVICES)])
    with contextlib.ExitStack() as stack:
        daemons = [stack.enter_context(running(cfg)) for cfg, _ in configs]
        assert all(d.fleet is not None for d in daemons)
        try:
            yield daemons, [tok for _, tok in configs], col
        finally:
            col.close()


def feed(broker: Mosquitto, daemons: list[Daemon], col: Collector, n: int, start: int) -> None:
    """Publish ``n`` samples to each device and wait until each predicted and learned all of them."""
    for i in range(DEVICES):
        publish_all(broker.port, f"d{i}/samples", device_samples(i, n, start), client_id=f"pub{i}")
    for i, d in enumerate(daemons):
        assert col.wait_for(f"d{i}/predictions", start + n, 30), f"device {i}: {col.count(f'd{i}/predictions')}"
        assert wait_until(lambda d=d: d.progress.learned == start + n, 30), (i, d.progress.learned)
    assert all(col.count(f"d{i}/dead") == 0 for i in range(DEVICES))


def start_flower(flower: Flower, daemons: list[Daemon], tokens: list[Path]) -> None:
    """The SuperLink and one SuperNode per daemon, its node config naming that daemon's channel."""
    flower.start_superlink()
    for i, (d, tok) in enumerate(zip(daemons, tokens, strict=True)):
        assert d.fleet is not None
        flower.start_supernode(i, d.fleet.address, tok)


def sample_weighted_average(sent: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    total = sum(n for _, n in sent)
    return {name: sum(n * w[name].astype(np.float64) for w, n in sent) / total for name in sent[0][0]}


def fleet_value(d: Daemon, name: str, **labels: str) -> float:
    return d.metrics.value(f"edge_cl_fleet_{name}", **labels)


def test_three_daemons_merge_a_round_and_keep_predicting(broker: Mosquitto, tmp_path: Path) -> None:
    flower = Flower(tmp_path, tls=True)
    # Device 2 needs more new samples than it will have learned: it sits the round out (no weights sent), the
    # server averages devices 0 and 1 only, and device 2 still takes the global model.
    with fleet_of_daemons(tmp_path, broker, (1, 1, 41)) as (daemons, tokens, col):
        try:
            started = time.time()
            start_flower(flower, daemons, tokens)  # they start up while the daemons learn
            feed(broker, daemons, col, 40, 0)
            # What each device will send: its weights and the samples behind them (idle now: nothing moves them).
            sent = [(merge.local_weights(d.learner), d.fleet.samples_since_merge(d.learner)) for d in daemons]
            assert [n for _, n in sent] == [40] * DEVICES
            assert any(not np.array_equal(sent[0][0][k], sent[1][0][k]) for k in sent[0][0])
            step_before = [d.learner.step for d in daemons]
            run = flower.run_app(f"num-server-rounds=1 min-nodes={DEVICES} round-timeout-s=60")
            assert run.wait(120) == 0, flower.procs.logs()
            assert wait_until(lambda: all(d.fleet.merges == 1 for d in daemons), 30), flower.procs.logs()
            run_log = (tmp_path / "flwr-run.log").read_text(errors="replace")
        finally:
            flower.stop()
        assert "sat the round out: it learned 40 samples since its last merge, below its fleet.min_new_samples 41" \
            in run_log, run_log[-3000:]

        # Every daemon took the round's global model: the sample-weighted average of what devices 0 and 1 sent.
        expected = sample_weighted_average(sent[:2])
        for d in daemons:
            held = merge.local_weights(d.learner)
            for name, value in expected.items():
                np.testing.assert_allclose(held[name], value, rtol=1e-5, atol=1e-6)
        for i, d in enumerate(daemons):
            joined = int(i < 2)
            assert fleet_value(d, "rounds_joined_total") == joined
            assert fleet_value(d, "rounds_skipped_total") == 1 - joined
            assert fleet_value(d, "merges_total") == 1
            assert fleet_value(d, "bytes_sent_total") == joined * len(wire.encode(sent[i][0]))
            assert fleet_value(d, "bytes_received_total") >= len(wire.encode(expected)) * 0.9
            assert started <= fleet_value(d, "last_merge_timestamp_seconds") <= time.time()
            for reason in ("refused", "timeout", "bad_body", "internal"):
                assert fleet_value(d, "merge_failures_total", reason=reason) == 0
            page = d.page_status()["fleet"]  # the status page's fleet line
            assert (page["rounds_joined"], page["rounds_skipped"], page["merges"]) == (joined, 1 - joined, 1)
            assert page["last_merge_unix"] > 0
        assert [d.learner.step for d in daemons] == step_before, "a merge is not a step"

        # A poisoned global model (NaN), handed over as a ClientApp would, is refused and counted; nothing changes.
        with pytest.raises(ChannelError, match="422.*NaN"):
            DaemonChannel(daemons[0].fleet.address, tokens[0]).merge_global(
                {k: np.full(v.shape, np.nan, np.float32) for k, v in expected.items()})
        assert fleet_value(daemons[0], "merge_failures_total", reason="refused") == 1
        assert daemons[0].fleet.merges == 1
        held = merge.local_weights(daemons[0].learner)
        for name, value in expected.items():
            np.testing.assert_allclose(held[name], value, rtol=1e-5, atol=1e-6)

        # Learning and predicting go on from the merged model.
        feed(broker, daemons, col, 20, 40)
        for i, d in enumerate(daemons):
            last = col.json(f"d{i}/predictions")[-1]
            assert last["model_step"] > step_before[i]
            held = merge.local_weights(d.learner)
            assert any(not np.allclose(held[k], expected[k]) for k in expected), "learning stopped after the merge"


def test_superlink_killed_mid_round_daemons_keep_learning_and_rejoin_the_next_round(
        broker: Mosquitto, tmp_path: Path) -> None:
    flower = Flower(tmp_path, tls=True)
    with fleet_of_daemons(tmp_path, broker) as (daemons, tokens, col):
        try:
            start_flower(flower, daemons, tokens)
            feed(broker, daemons, col, 40, 0)
            run = flower.run_app(f"num-server-rounds=1 min-nodes={DEVICES} round-timeout-s=60", "flwr-run1")
            # Mid-round: a device has sent its weights, and the global model has not come back yet.
            assert wait_until(lambda: any(d.fleet.stats.rounds_joined for d in daemons), 60, 0.005), \
                flower.procs.logs()
            flower.kill_superlink()
            flower.procs.kill(run, signal.SIGKILL)
            assert all(d.fleet.merges == 0 for d in daemons), "the round ended before the SuperLink was killed"

            # No SuperLink: every daemon learns and predicts as before, and nothing is left waiting on it.
            feed(broker, daemons, col, 20, 40)
            assert all(d.fleet.merges == 0 and d.fleet._requests.empty() for d in daemons)
            # Taken now: a ClientApp still reading weights when the SuperLink died has finished since.
            joined_round1 = [d.fleet.stats.rounds_joined for d in daemons]
            sent = [(merge.local_weights(d.learner), d.fleet.samples_since_merge(d.learner)) for d in daemons]
            assert [n for _, n in sent] == [60] * DEVICES, "the abandoned round must not reset what counts"

            # A restarted SuperLink on the same address: the SuperNodes find it again and the next round merges.
            flower.start_superlink()
            run = flower.run_app(f"num-server-rounds=1 min-nodes={DEVICES} round-timeout-s=60", "flwr-run2")
            assert run.wait(120) == 0, flower.procs.logs()
            assert wait_until(lambda: all(d.fleet.merges == 1 for d in daemons), 30), flower.procs.logs()
        finally:
            flower.stop()

        expected = sample_weighted_average(sent)
        for i, d in enumerate(daemons):
            held = merge.local_weights(d.learner)
            for name, value in expected.items():
                np.testing.assert_allclose(held[name], value, rtol=1e-5, atol=1e-6)
            assert d.fleet.stats.rounds_joined == joined_round1[i] + 1
            assert fleet_value(d, "merge_failures_total", reason="timeout") == 0
        feed(broker, daemons, col, 10, 60)  # and predictions still flow
