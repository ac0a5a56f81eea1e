"""Tests of `edge-cl check-config`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edge_cl.cli.main import app

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "example.toml"


def test_valid_config_prints_resolved_values_with_secrets_masked(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace('# username = "edge-cl"', 'username = "edge-cl"').replace(
        '# password_env = "EDGE_CL_MQTT_PASSWORD"', 'password_env = "EDGE_CL_MQTT_PASSWORD"')
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    res = CliRunner().invoke(app, ["check-config", str(cfg), "--json"], env={"EDGE_CL_MQTT_PASSWORD": "topsecret"})
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["broker"]["username"] == "edge-cl" and "***" in data["broker"]["password_env"]
    assert "topsecret" not in res.output
    assert data["spool"]["path"] == str(tmp_path / "spool.sqlite")


def test_invalid_config_exits_1_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(EXAMPLE.read_text().replace("port = 1883", "port = 99999"))
    res = CliRunner().invoke(app, ["check-config", str(cfg)])
    assert res.exit_code == 1
    assert "broker.port" in res.output and "99999" in res.output
