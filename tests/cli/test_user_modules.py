"""The user's modules named by a config (model.type = "mod:fn", learner.plugins): found beside the config file,
and when not found, one error naming the module, the directories searched and how to make it importable."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_cl.cli.main import app


@pytest.fixture(autouse=True)
def own_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_config appends the config's directory to sys.path: keep that inside each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:8]}"


def write_config(directory: Path, model_type: str) -> Path:
    path = directory / "device.toml"
    path.write_text(f'[input]\ndim = 4\nnum_classes = 2\n[model]\ntype = "{model_type}"\n')
    return path


def check(config: Path) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["check-config", str(config)])
    return res.exit_code, res.output


def test_a_missing_model_module_names_the_module_the_directories_and_the_fix(tmp_path: Path) -> None:
    name = unique("absent_model")
    code, out = check(write_config(tmp_path, f"{name}:build"))
    assert code == 1 and "Traceback" not in out
    flat = " ".join(out.split())  # the terminal may wrap the line
    assert f"model.type = '{name}:build': module '{name}' cannot be imported" in flat
    assert str(tmp_path) in flat  # the config file's directory was searched
    assert f"put {name}.py" in flat and "beside the config file" in flat and "PYTHONPATH" in flat


def test_a_model_module_beside_the_config_is_found(tmp_path: Path) -> None:
    name = unique("beside_model")
    (tmp_path / f"{name}.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(4, 2)\n")
    code, out = check(write_config(tmp_path, f"{name}:build"))
    assert code == 0, out


def test_a_module_without_the_factory_names_its_file_and_the_function(tmp_path: Path) -> None:
    name = unique("no_factory")
    (tmp_path / f"{name}.py").write_text("x = 1\n")
    code, out = check(write_config(tmp_path, f"{name}:build"))
    flat = " ".join(out.split())
    assert code == 1 and "Traceback" not in out
    assert str(tmp_path / f"{name}.py") in flat and "has no function 'build'" in flat and "def build(" in flat


def test_a_module_importing_a_missing_package_says_which_and_where(tmp_path: Path) -> None:
    name, dep = unique("needs_dep"), unique("absent_dependency")
    (tmp_path / f"{name}.py").write_text(f"import {dep}\n")
    code, out = check(write_config(tmp_path, f"{name}:build"))
    flat = " ".join(out.split())
    assert code == 1 and "Traceback" not in out
    assert f"it imports '{dep}' at {tmp_path / (name + '.py')}:1" in flat and "pip install" in flat


def test_a_factory_that_raises_is_one_line_with_its_location(tmp_path: Path) -> None:
    name = unique("raises")
    (tmp_path / f"{name}.py").write_text("def build(width):\n    raise RuntimeError('width too small')\n")
    (tmp_path / "device.toml").write_text(f'[input]\ndim = 4\nnum_classes = 2\n[model]\ntype = "{name}:build"\n'
                                          "width = 1\n")
    code, out = check(tmp_path / "device.toml")
    flat = " ".join(out.split())
    assert code == 1 and "Traceback" not in out
    assert f"raised at {tmp_path / (name + '.py')}:2: RuntimeError: width too small" in flat


def test_plugins_beside_the_config_are_found_and_missing_ones_named(tmp_path: Path) -> None:
    plugin = unique("beside_plugin")
    (tmp_path / f"{plugin}.py").write_text("LOADED = True\n")
    config = tmp_path / "device.toml"
    config.write_text(f'[input]\ndim = 4\nnum_classes = 2\n[model]\ntype = "mlp"\ninput_dim = 4\nnum_classes = 2\n'
                      f'[learner]\nplugins = ["{plugin}"]\n')
    code, out = check(config)
    assert code == 0, out
    assert sys.modules[plugin].__file__ == str(tmp_path / f"{plugin}.py")
    absent = unique("absent_plugin")
    config.write_text(f'[input]\ndim = 4\nnum_classes = 2\n[model]\ntype = "mlp"\ninput_dim = 4\nnum_classes = 2\n'
                      f'[learner]\nplugins = ["{absent}"]\n')
    code, out = check(config)
    flat = " ".join(out.split())
    assert code == 1 and "Traceback" not in out
    assert f"learner.plugins: module '{absent}' cannot be imported" in flat and str(tmp_path) in flat


@pytest.mark.parametrize(("body", "said"), [
    ("nn.Linear(4, 3)", "returns shape (2, 3) for a [2, 4] batch; expected logits [2, 2] (input.num_classes=2)"),
    ("nn.Linear(5, 2)", "forward on a flat [2, 4] float32 batch ([input] gives 4 features per sample) failed"),
])
def test_a_factory_model_breaking_the_contract_is_a_config_error(tmp_path: Path, body: str, said: str) -> None:
    name = unique("bad_contract")
    (tmp_path / f"{name}.py").write_text(f"from torch import nn\n\ndef build():\n    return {body}\n")
    code, out = check(write_config(tmp_path, f"{name}:build"))
    assert code == 1 and "Traceback" not in out
    assert f"model.type = '{name}:build'" in " ".join(out.split()) and said in " ".join(out.split())
