"""The documented deployment: config in a read-only /etc/edge-cl, state under $STATE_DIRECTORY (systemd's
StateDirectory=), as deploy/systemd/edge-cl.service sets them up; and `check-config` refusing what `run` refuses."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edge_cl.cli.main import app
from edge_cl.config import load_config
from tests.daemon.faults import read_only

ROOT = Path(__file__).resolve().parents[2]
# The example's state paths, left relative as in deploy/config/example.toml; no broker: the daemon starts anyway.
CONFIG = """
[input]
dim = 6
num_classes = 3
[model]
type = "mlp"
input_dim = 6
hidden = [8]
num_classes = 3
[learner]
budget_bytes = {budget}
device = "cpu"
[broker]
port = 1
connect_timeout_s = 0.5
[metrics]
enabled = false
[checkpoint]
dir = "checkpoints"
[snapshot]
dir = "snapshots"
[spool]
path = "spool.sqlite"
"""


def etc_config(tmp_path: Path, budget: int = 200_000) -> Path:
    etc = tmp_path / "etc" / "edge-cl"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text(CONFIG.format(budget=budget))
    return etc / "config.toml"


def test_the_shipped_unit_gives_the_daemon_a_state_directory() -> None:
    unit = (ROOT / "deploy" / "systemd" / "edge-cl.service").read_text()
    assert "StateDirectory=edge-cl" in unit and "ProtectSystem=strict" in unit
    assert "ExecStart=/usr/local/bin/edge-cl run /etc/edge-cl/config.toml" in unit


def test_read_only_config_dir_with_state_directory_starts_and_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_cl.daemon.service import Daemon

    config = etc_config(tmp_path)
    state = tmp_path / "var" / "lib" / "edge-cl"
    state.mkdir(parents=True)
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    with read_only(config.parent):
        res = CliRunner().invoke(app, ["check-config", str(config), "--json"])
        assert res.exit_code == 0, res.output
        assert f'"{state / "spool.sqlite"}"' in res.output and f'"{state / "checkpoints"}"' in res.output
        cfg = load_config(config)
        daemon, stop, codes = Daemon(cfg), threading.Event(), []
        threads = torch.get_num_threads()
        t = threading.Thread(target=lambda: codes.append(daemon.run(stop)), daemon=True)
        t.start()
        try:
            assert daemon.ready.wait(60), "the daemon did not start"
        finally:
            stop.set()
            t.join(30)
            torch.set_num_threads(threads)
    assert codes == [0], daemon.exit_reason
    assert (state / "spool.sqlite").is_file() and list((state / "checkpoints").glob("ckpt-*.pt"))
    assert not (config.parent / "spool.sqlite").exists()


def test_read_only_state_paths_are_named_by_check_config_and_run_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = etc_config(tmp_path)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    with read_only(config.parent):
        checked = CliRunner().invoke(app, ["check-config", str(config)])
        ran = CliRunner().invoke(app, ["run", str(config)])
    assert checked.exit_code == 1 and ran.exit_code == 3, (checked.output, ran.output)
    for res in (checked, ran):
        out = " ".join(res.output.split())  # rich / typer may wrap long lines
        for key, name in (("spool.path", ""), ("checkpoint.dir", "checkpoints"), ("snapshot.dir", "snapshots")):
            assert key in out
            assert str(config.parent / name).rstrip("/") in out
        assert "STATE_DIRECTORY" in out
        assert "Traceback" not in out and "internal error" not in out and "valid" not in out.replace("invalid", "")


def test_check_config_refuses_the_budget_run_refuses_with_the_same_figure(tmp_path: Path) -> None:
    import re

    from edge_cl.daemon.service import Daemon

    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CONFIG.format(budget=2000).replace("hidden = [8]", "hidden = [32]"))
    res = CliRunner().invoke(app, ["check-config", str(cfg_path)])
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())
    assert "learner.budget_bytes" in out and "2,000" in out
    with pytest.raises(ValueError) as err:
        Daemon(load_config(cfg_path))._new_learner()
    needed = re.search(r"needs at least ([\d,]+) bytes", str(err.value))
    assert needed is not None and f"at least {needed.group(1)} bytes" in out
    ran = CliRunner().invoke(app, ["run", str(cfg_path)])
    assert ran.exit_code == 3 and f"at least {needed.group(1)} bytes" in " ".join(ran.output.split())
