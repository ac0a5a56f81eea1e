"""benchmarks/fleet.py --transport superlink: its byte-counting proxy, and a tiny run whose rounds go through a real
SuperLink and SuperNodes and end on the in-process run's weights (bit for bit with 2 devices: a sum of two models
does not depend on the order Flower hands them over in)."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.data_files import mnist_present

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def test_the_proxy_forwards_both_ways_and_counts_each() -> None:
    proxy_mod = load("fleet_superlink")
    server = socket.create_server(("127.0.0.1", 0))

    def echo_twice() -> None:
        conn, _ = server.accept()
        with conn:
            data = conn.recv(1000)
            conn.sendall(data * 2)

    threading.Thread(target=echo_twice, daemon=True).start()
    proxy = proxy_mod.CountingProxy(server.getsockname()[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as c:
            c.sendall(b"x" * 300)
            got = b""
            while len(got) < 600:
                got += c.recv(1000)
        deadline = time.monotonic() + 5
        while proxy.counts() != (300, 600) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == b"x" * 600 and proxy.counts() == (300, 600)
    finally:
        proxy.close()
        server.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not mnist_present(), reason="MNIST files not found (set EDGE_CL_DATA)")
def test_rounds_through_a_superlink_end_on_the_in_process_weights(tmp_path) -> None:
    pytest.importorskip("flwr", reason="fleet learning needs Flower: pip install 'edge-cl[fleet]'")
    bench = load("fleet")
    out = tmp_path / "superlink.json"
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--transport", "superlink", "--devices", "2", "--scale", "0.003", "--seeds", "0",
                           "--a", "1", "--every", "9", "--server-lr", "1", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    doc = json.loads(out.read_text())
    run = doc["seeds"][0]
    flower = run["flower"]
    assert run["max_weight_diff"] == 0 and run["superlink"]["mean_all"] == run["inprocess"]["mean_all"]
    assert flower["rounds"] == 4 and flower["merges"] == [4, 4] and len(flower["round_s"]) == 4
    model = doc["payload_bytes"]
    assert flower["payload_up_per_round"] == [model, model] == flower["payload_down_per_round"]
    # On the wire a round costs a device about one model each way (Flower's framing and polling on top), not two.
    assert all(model <= b < 1.5 * model for b in flower["wire_up_per_round"] + flower["wire_down_per_round"])
    assert "through a real SuperLink" in bench.render_superlink(doc)
