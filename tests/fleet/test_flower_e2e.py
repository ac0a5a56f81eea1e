"""Two devices average what they learned through real Flower processes: a SuperLink, one SuperNode per device,
and a run of edge_cl's ServerApp; every process on loopback ports."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("flwr", reason="fleet learning needs Flower: pip install 'edge-cl[fleet]'")

from edge_cl.fleet import FleetChannel, merge
from tests.fleet.flower_procs import APP_DIR, REPO, Processes, free_port, make_pki, tool, wait_listening
from tests.fleet.helpers import LearningLoop, batches, learner, token_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("tls", [False, True], ids=["insecure", "tls"])
def test_two_devices_end_with_the_sample_weighted_average(tmp_path, tls: bool) -> None:
    link_port = free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    pki = make_pki(tmp_path / "pki") if tls else None
    # The SuperLink's Fleet, Control and Runtime APIs on TLS; SuperNodes and `flwr run` verify it with the CA.
    link_tls = (["--ssl-ca-certfile", str(pki["ca"]), "--ssl-certfile", str(pki["cert"]), "--ssl-keyfile",
                 str(pki["key"])] if pki else ["--insecure"])
    node_tls = ["--root-certificates", str(pki["ca"])] if pki else ["--insecure"]
    # `flwr run` finds the SuperLink through a named connection in $FLWR_HOME/config.toml.
    secure = f'root-certificates = "{pki["ca"]}"\n' if pki else "insecure = true\n"
    (home / "config.toml").write_text(f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
                                      f'address = "127.0.0.1:{link_port}"\n{secure}')
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    # Two devices, each learning its own data (different classes' prototypes) in its own learning thread.
    devices = []
    for i, (seed, n, shift) in enumerate([(10, 6, 0.0), (11, 3, 3.0)]):
        tok = token_file(tmp_path, f"device{i}.token")
        ch = FleetChannel(tok.read_text().strip(), timeout_s=60)
        devices.append((learner(seed), ch, tok, batches(seed, n, shift=shift)))
    loops = [LearningLoop(lrn, ch, data) for lrn, ch, _, data in devices]
    procs = Processes(tmp_path, env)
    try:
        for loop in loops:
            loop.__enter__()
        for loop in loops:
            assert loop.learned_all.wait(60)
        # What each device would send: its weights and its sample count (all learned since no merge yet).
        sent = [(merge.local_weights(lrn), ch.samples_since_merge(lrn)) for lrn, ch, _, _ in devices]
        assert [s for _, s in sent] == [6 * 8, 3 * 8]
        # A test that can fail: the devices' weights differ before the round.
        assert any(not np.array_equal(sent[0][0][k], sent[1][0][k]) for k in sent[0][0])

        procs.start("superlink", tool("flower-superlink"), *link_tls, "--host", "127.0.0.1",
                    "--port", str(link_port), "--disable-runtime-dependency-installation")
        wait_listening(link_port, procs)
        for i, (_, ch, tok, _) in enumerate(devices):
            procs.start(f"supernode{i}", tool("flower-supernode"), *node_tls,
                        "--superlink", f"127.0.0.1:{link_port}", "--host", "127.0.0.1", "--port", str(free_port()),
                        "--node-config", f"fleet-address='{ch.address}' fleet-token-file='{tok}'")
        run = subprocess.run([tool("flwr"), "run", str(APP_DIR), "local", "--stream",
                              "--run-config", "num-server-rounds=2 min-nodes=2 round-timeout-s=120"],
                             check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, f"flwr run failed:\n{run.stdout}\n{run.stderr}\n{procs.logs()}"
        deadline = time.monotonic() + 120
        while sum(ch.merges for _, ch, _, _ in devices) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [ch.merges for _, ch, _, _ in devices] == [2, 2], \
            f"{run.stdout}\n{run.stderr}\n{procs.logs()}"
    finally:
        procs.stop()
        for loop in loops:
            loop.__exit__(None, None, None)
        for _, ch, _, _ in devices:
            ch.close()

    # Round 1 averages what they sent, weighted by samples (48 and 24); round 2 averages the merged model with
    # itself (no sample learned since), so both devices end holding the round-1 average.
    (w0, n0), (w1, n1) = sent
    for lrn, _, _, _ in devices:
        held = merge.local_weights(lrn)
        for name in w0:
            expected = (n0 * w0[name].astype(np.float64) + n1 * w1[name]) / (n0 + n1)
            np.testing.assert_allclose(held[name], expected, rtol=1e-6, atol=1e-7)
    for name in w0:
        np.testing.assert_array_equal(merge.local_weights(devices[0][0])[name],
                                      merge.local_weights(devices[1][0])[name])
