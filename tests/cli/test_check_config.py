"""Tests of `edge-cl check-config`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def test_fleet_min_new_samples_is_checked_and_printed(tmp_path: Path) -> None:
    assert "\nmin_new_samples = 1\n" in EXAMPLE.read_text()  # the example names the setting and its default
    cfg = tmp_path / "c.toml"
    cfg.write_text(EXAMPLE.read_text().replace("min_new_samples = 1", "min_new_samples = 50"))
    data = json.loads(CliRunner().invoke(app, ["check-config", str(cfg), "--json"]).output)
    assert data["fleet"]["min_new_samples"] == 50
    cfg.write_text(EXAMPLE.read_text().replace("min_new_samples = 1", "min_new_samples = -5"))
    res = CliRunner().invoke(app, ["check-config", str(cfg)])
    assert res.exit_code == 1 and "fleet.min_new_samples" in res.output and "-5" in res.output


def test_file_modes_print_as_octal(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(EXAMPLE.read_text().replace("file_mode = 0o640", "file_mode = 0o600", 1))
    data = json.loads(CliRunner().invoke(app, ["check-config", str(cfg), "--json"]).output)
    assert data["checkpoint"]["file_mode"] == "0o600" and data["snapshot"]["file_mode"] == "0o640"
    table = CliRunner().invoke(app, ["check-config", str(cfg)]).output
    assert "0o600" in table and "384" not in table and "416" not in table


def test_connect_timeout_doc_says_what_the_daemon_does() -> None:
    # The link waits connect_timeout_s for the first connection, then starts anyway and keeps retrying.
    from edge_cl.config import BrokerConfig

    doc = BrokerConfig.model_fields["connect_timeout_s"].description or ""
    assert "give up" not in doc.lower().replace("never gives up", "") and "retrying" in doc
    assert "retrying" in EXAMPLE.read_text().split("connect_timeout_s =")[0].rsplit("\n#", 1)[-1]


def test_demo_output_directory_is_git_ignored() -> None:
    import inspect
    import shutil
    import subprocess

    from edge_cl.cli.demo import demo

    root = EXAMPLE.parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    default = inspect.signature(demo).parameters["out"].default
    done = subprocess.run(["git", "check-ignore", "-q", f"{default}/summary.json"], cwd=root, check=False)
    assert done.returncode == 0, f"{default}/ (edge-cl demo's default output) is not in .gitignore"
