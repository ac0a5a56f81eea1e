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


def test_unset_password_env_is_a_configuration_error_exit_3(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.broker import daemon_toml, free_port

    monkeypatch.delenv("EDGE_CL_TEST_UNSET_PASSWORD", raising=False)
    cfg = daemon_toml(tmp_path, free_port(),
                      broker_extra='username = "u"\npassword_env = "EDGE_CL_TEST_UNSET_PASSWORD"')
    monkeypatch.chdir(tmp_path)
    import logging

    logger = logging.getLogger("edge_cl")  # `run` configures the daemon's logging: undo it for later tests
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "level", logger.level)
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 3, res.output
    assert "EDGE_CL_TEST_UNSET_PASSWORD" in res.output


def test_exit_codes_and_the_systemd_unit_agree_with_deploy_readme() -> None:
    import re

    from edge_cl.daemon.service import EXIT_BROKER, EXIT_ERROR, EXIT_OK

    root = Path(__file__).resolve().parents[2]
    readme = (root / "deploy" / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(c) for c in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert documented == {EXIT_OK, EXIT_BROKER, EXIT_ERROR} == {0, 2, 3}
    unit = (root / "deploy" / "systemd" / "edge-cl.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE))
    assert settings["Restart"] == "on-failure"  # restarts on 3 (and on a crash by signal)
    assert {int(c) for c in settings["RestartPreventExitStatus"].split()} == {EXIT_BROKER}
    assert "exit 3" in section.lower() or "| 3 |" in section
