"""A registered method is usable by name in the learner, the TOML config (check-config) and edge-cl bench;
an unknown one is refused naming the key and the registered names."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edge_cl import methods
from edge_cl.cli.main import app
from edge_cl.config import ConfigError, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "example.toml"


def _config(tmp_path: Path, learner_lines: str) -> Path:
    text = EXAMPLE.read_text().replace('method = "', '# method = "', 1)
    text = text.replace("[learner]\n", f"[learner]\n{learner_lines}\n", 1)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_check_config_rejects_an_unknown_method_naming_key_and_names(tmp_path):
    res = CliRunner().invoke(app, ["check-config", str(_config(tmp_path, 'method = "er+frobnicate"'))])
    assert res.exit_code == 1
    assert "learner.method" in res.output and "'frobnicate' is not a registered method" in res.output
    for name in methods.available():
        assert name in res.output


def test_check_config_rejects_a_setting_no_method_declares(tmp_path):
    res = CliRunner().invoke(app, ["check-config", str(_config(tmp_path, 'method = "er"\nimportance_lamda = 3'))])
    assert res.exit_code == 1 and "learner.importance_lamda: unknown key" in res.output


def test_toml_takes_a_plugin_method_and_its_settings(tmp_path, plugin_module):
    path = _config(tmp_path, f'plugins = ["{plugin_module}"]\nmethod = "plugin-replay + ewc"\nimportance_lambda = 3')
    res = CliRunner().invoke(app, ["check-config", str(path), "--json"])
    assert res.exit_code == 0, res.output
    learner = json.loads(res.output)["learner"]
    assert learner["method"] == "plugin-replay+ewc" and learner["method_params"] == {"importance_lambda": 3}


def test_daemon_config_builds_the_learner_it_names(plugin_module):
    cfg = parse_config({"input": {"dim": 8, "num_classes": 3}, "model": {"type": "mlp", "input_dim": 8, "hidden": [4],
                        "num_classes": 3}, "learner": {"plugins": [plugin_module], "method": "plugin-replay",
                                                       "budget_bytes": 50_000}})
    from edge_cl.learner import OnlineLearner

    learner = OnlineLearner.from_config(cfg.build_model(), cfg.learner.learner_config(), device="cpu")
    assert learner.method == "plugin-replay" and learner.memory_report()["buffer_capacity"] > 0


def test_unimportable_plugin_is_a_config_error():
    try:
        parse_config({"input": {"dim": 8, "num_classes": 3}, "model": {"type": "mlp", "input_dim": 8,
                      "num_classes": 3}, "learner": {"plugins": ["no_such_module_xyz"]}})
    except ConfigError as exc:
        assert "no_such_module_xyz" in str(exc) and "cannot be imported" in str(exc)
    else:
        raise AssertionError("an unimportable plugin was accepted")


def test_bench_runs_a_plugin_method_by_name(tmp_path, plugin_module, one_thread):
    out = tmp_path / "out.json"
    res = CliRunner().invoke(app, ["bench", "--stream", "sea", "--scale", "0.01", "--plugins", plugin_module,
                                   "--methods", "plugin-replay,er+ewc", "--no-bare", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert set(doc["methods"]) == {"plugin-replay", "er+ewc"}
    assert doc["methods"]["plugin-replay"]["prequential_acc"] > 0.6


def test_the_daemon_table_itself_builds_a_learner_that_saves_and_loads(tmp_path):
    cfg = parse_config({"input": {"dim": 8, "num_classes": 3}, "model": {"type": "mlp", "input_dim": 8, "hidden": [4],
                        "num_classes": 3}, "learner": {"method": "er+ewc", "budget_bytes": 50_000, "threads": 1}})
    from edge_cl.learner import OnlineLearner

    learner = OnlineLearner.from_config(cfg.build_model(), cfg.learner, device="cpu")
    learner.save(tmp_path / "s.pt")
    assert OnlineLearner.load(tmp_path / "s.pt", device="cpu").method == "er+ewc"
