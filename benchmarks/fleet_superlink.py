"""The fleet benchmark's rounds through real Flower processes (``benchmarks/fleet.py --transport superlink``).

Each device is an OnlineLearner with the daemon's own fleet channel (:class:`edge_cl.fleet.FleetChannel`) in a
thread of this process; a real ``flower-superlink`` and one ``flower-supernode`` per device run on loopback, and
``flwr run`` starts edge_cl's Flower App (its ServerApp and ClientApp, as deployed). A device learns K steps, then
serves its channel until the round's global model is merged (lock-step, as the in-process transport), so the
rounds carry the same weights and sample counts, and the accuracy can be compared with the in-process run.

Each SuperNode dials the SuperLink through a byte-counting TCP proxy on loopback: the bytes up and down per device
are what went over the wire (Flower's HTTP, its polling and heartbeats included), beside the payload the channel
handed over. A round's latency: from the moment the last device reached the round to the moment the last device
merged its global model.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_cl.fleet import FleetChannel


class CountingProxy:
    """A TCP forwarder from a loopback port to ``target_port`` counting the bytes each way (benchmark tooling:
    its threads live as long as the run)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0    # client -> server (the SuperNode's requests: what the device sends)
        self.down = 0  # server -> client (what the device receives)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the SuperLink is not up (yet): the SuperNode retries
                continue
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
                with self._lock:
                    if up:
                        self.up += len(chunk)
                    else:
                        self.down += len(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.up, self.down

    def close(self) -> None:
        self._closed = True
        self._listener.close()


@dataclass
class DeviceTimes:
    """When a device reached each round and when it had merged that round's global model (perf_counter)."""

    ready: list[float] = field(default_factory=list)
    merged: list[float] = field(default_factory=list)
    error: BaseException | None = None


def device_loop(lrn: Any, ch: FleetChannel, x: torch.Tensor, y: torch.Tensor, steps: int, every: int, batch: int,
                times: DeviceTimes, deadline_s: float) -> None:
    """Learn ``every`` steps, then serve the channel until the round's model is merged; to the end of the data."""
    try:
        for i in range(steps):
            lrn.learn(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            if (i + 1) % every == 0 or i + 1 == steps:
                times.ready.append(time.perf_counter())
                target, limit = ch.merges + 1, time.monotonic() + deadline_s
                while ch.merges < target:
                    ch.apply_pending(lrn)
                    if time.monotonic() > limit:
                        raise TimeoutError(f"round {len(times.ready)}: no global model within {deadline_s} s")
                    time.sleep(0.002)
                times.merged.append(time.perf_counter())
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        times.error = exc


def run_rounds(learners: list[Any], data: list[tuple[torch.Tensor, torch.Tensor]], steps: int, every: int,
               batch: int, a: float, server_lr: float, refresh: str, tmp: Path) -> dict[str, Any]:
    """The devices' learning with ``ceil(steps / every)`` rounds through a SuperLink; Flower's measurements."""
    from tests.fleet.flower_procs import Flower
    from tests.fleet.helpers import token_file

    rounds = -(-steps // every)
    flower = Flower(tmp)
    # The SuperExec polls for the ServerApp's and ClientApps' tasks every 0.1 s instead of its default.
    flower.env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = "0.1"
    channels: list[FleetChannel] = []
    proxies: list[CountingProxy] = []
    threads: list[threading.Thread] = []
    times = [DeviceTimes() for _ in learners]
    try:
        tokens = [token_file(tmp, f"device{d}.token") for d in range(len(learners))]
        channels = [FleetChannel(tok.read_text().strip(), timeout_s=600, global_weight=a, min_new_samples=1,
                                 refresh=refresh) for tok in tokens]
        flower.start_superlink()
        for d, (ch, tok) in enumerate(zip(channels, tokens, strict=True)):
            proxies.append(CountingProxy(flower.link_port))
            flower.start_supernode(d, ch.address, tok, proxies[-1].port)
        # Counted from here: every SuperNode has connected (registration is a one-off, not a round's cost).
        limit = time.monotonic() + 60
        while any(p.counts()[1] == 0 for p in proxies) and time.monotonic() < limit:
            time.sleep(0.1)
        time.sleep(1.0)
        idle = [p.counts() for p in proxies]
        t_start = time.perf_counter()
        run = flower.run_app(f"num-server-rounds={rounds} min-nodes={len(learners)} round-timeout-s=600 "
                             f"server-lr={server_lr}")
        for lrn, ch, (x, y), t in zip(learners, channels, data, times, strict=True):
            threads.append(threading.Thread(target=device_loop, args=(lrn, ch, x, y, steps, every, batch, t, 900),
                                            daemon=True))
            threads[-1].start()
        for th in threads:
            th.join()
        failed = [t.error for t in times if t.error is not None]
        if failed:
            raise RuntimeError(f"a device failed: {failed[0]}\n{flower.procs.logs()}")
        if run.wait(120) != 0:
            raise RuntimeError(f"flwr run failed\n{flower.procs.logs()}")
        wall = time.perf_counter() - t_start
        wire = [tuple(np.subtract(p.counts(), i)) for p, i in zip(proxies, idle, strict=True)]
        stats = [ch.stats.snapshot() for ch in channels]
    finally:
        flower.stop()
        for p in proxies:
            p.close()
        for ch in channels:
            ch.close()
    latency = [max(t.merged[r] for t in times) - max(t.ready[r] for t in times) for r in range(rounds)]
    return {"rounds": rounds, "wall_s": wall, "round_s": latency,
            "wire_up_per_round": [int(u) / rounds for u, _ in wire],
            "wire_down_per_round": [int(dn) / rounds for _, dn in wire],
            "payload_up_per_round": [s["bytes_sent"] / rounds for s in stats],
            "payload_down_per_round": [s["bytes_received"] / rounds for s in stats],
            "merges": [s["merges"] for s in stats]}
