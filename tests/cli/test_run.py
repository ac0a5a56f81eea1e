"""Tests of `edge-cl run` that need no broker: config errors and unreachable brokers fail clearly."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from edge_cl.cli.main import app


def test_bad_config_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[input]\ndim = 4\nnum_classes = 2\n[model]\ntype = "mlp"\ninput_dim = 5\nnum_classes = 2\n')
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 3
    assert "input_dim=5" in res.output and "Traceback" not in res.output
