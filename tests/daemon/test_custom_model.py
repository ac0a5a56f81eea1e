"""A model of the user's own, in a module beside the config file (not in edge_cl, not on PYTHONPATH), through
`edge-cl run` -> ONNX snapshots -> `edge-cl predict`. No broker: the spool is filled before the daemon starts
and the daemon learns it while its MQTT link retries an address where nothing listens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_cl.cli.main import app
from edge_cl.daemon.codec import encode_json
from edge_cl.daemon.spool import SAMPLE, Incoming, Spool
from tests.broker import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHANNELS, LENGTH, CLASSES, SAMPLES = 3, 4, 3, 160

# Keeps the documented contract and nothing more: flat [B, 12] rows in (reshaped inside), logits out; no
# input_dim, input_shape or num_classes attribute.
USER_MODULE = '''
import torch
from torch import nn


class WindowNet(nn.Module):
    def __init__(self, channels, length, classes):
        super().__init__()
        self.channels, self.length = channels, length
        self.conv = nn.Conv1d(channels, 8, 3, padding=1)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        h = torch.relu(self.conv(x.reshape(x.shape[0], self.channels, self.length)))
        return self.head(h.mean(-1))


def build(channels, length, classes):
    return WindowNet(channels, length, classes)
'''


def write_user_module(directory: Path) -> str:
    name = f"user_window_net_{uuid.uuid4().hex[:8]}"  # unique: nothing cached in sys.modules can answer for it
    (directory / f"{name}.py").write_text(USER_MODULE)
    return name


def write_config(directory: Path, module: str, input_table: str) -> Path:
    path = directory / "device.toml"
    path.write_text(f"""
[broker]
host = "127.0.0.1"
port = {free_port()}
connect_timeout_s = 0.5
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[input]
{input_table}
num_classes = {CLASSES}

[model]
type = "{module}:build"
channels = {CHANNELS}
length = {LENGTH}
classes = {CLASSES}

[learner]
budget_bytes = 200000
replay_batch = 4
device = "cpu"
max_batch = 8

[checkpoint]
dir = "ckpt"
every_steps = 5

[snapshot]
dir = "snapshots"
every_steps = 5

[spool]
path = "spool.sqlite"

[metrics]
enabled = false
""")
    return path


def fill_spool(path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(SAMPLES):
        x = rng.normal(size=CHANNELS * LENGTH)
        rows.append(Incoming(SAMPLE, f"s{i}", True, encode_json(f"s{i}", x, int(np.argmax(x[:CLASSES])))))
    spool = Spool(path)
    spool.put_many(rows)
    spool.close()


@pytest.mark.parametrize(("input_table", "shape"), [
    (f"shape = [{CHANNELS}, {LENGTH}]", [CHANNELS, LENGTH]),
    (f"dim = {CHANNELS * LENGTH}", [CHANNELS * LENGTH]),  # vector input: the learner standardises, too
])
def test_custom_model_beside_the_config_runs_snapshots_and_predicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   input_table: str, shape: list[int]) -> None:
    device = tmp_path / "device"
    device.mkdir()
    module = write_user_module(device)
    config = write_config(device, module, input_table)
    fill_spool(device / "spool.sqlite")
    elsewhere = tmp_path / "elsewhere"  # neither the working directory nor PYTHONPATH holds the module
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_cl.cli.main", "run", str(config)], cwd=elsewhere, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    manifest_path = device / "snapshots" / "manifest.json"
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None:
            if manifest_path.exists() and json.loads(manifest_path.read_text())["step"] >= 10:
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "failed" not in out, out
    assert f"import path: appended {device}" in out, out
    assert f"model {module}:build from {device / (module + '.py')}" in out, out

    manifest = json.loads(manifest_path.read_text())
    assert manifest["input_shape"] == shape and manifest["num_classes"] == CLASSES
    samples = np.random.default_rng(7).normal(size=(9, CHANNELS * LENGTH)).astype(np.float32)
    np.save(tmp_path / "x.npy", samples)
    res = CliRunner().invoke(app, ["predict", str(device / "snapshots"), "--input", str(tmp_path / "x.npy"),
                                   "--proba"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(samples) and all(0 <= line["class"] < CLASSES for line in lines)

    # The snapshot is the model the daemon ended with: its last checkpoint, rebuilt from the saved spec.
    from edge_cl import OnlineLearner

    monkeypatch.syspath_prepend(str(device))
    monkeypatch.delitem(sys.modules, module, raising=False)
    ckpt = max((device / "ckpt").glob("ckpt-*.pt"))
    learner = OnlineLearner.load(ckpt, device="cpu")
    # The daemon is stopped once a snapshot of step 10 or later exists, so on a busy machine it may not have learned
    # every spooled sample yet: what matters is that the snapshot and the last checkpoint are the same model.
    assert learner.step == manifest["step"] and 0 < learner.samples_learned <= SAMPLES
    np.testing.assert_allclose(np.array([line["probabilities"] for line in lines]), learner.predict_proba(samples),
                               atol=1e-5)
