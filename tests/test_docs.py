"""The documentation site (issue #26): `mkdocs build --strict` passes, every ```python block of docs/*.md runs,
the generated references cover the code, links into BENCHMARKS.md name real sections.

Marked `docs`. The build needs the `docs` extra (mkdocs, mkdocs-material): skipped without it, failed instead
under EDGE_CL_REQUIRE_DOCS=1 (CI, `.ci/run`). The other checks need nothing beyond the package.

A ```python block is run unless the line before its fence is `<!-- norun -->` (for blocks that need a broker,
a GPU or files that do not exist in a test).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NORUN = "<!-- norun -->"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """(line number, code, runs) for every ```python block of ``path``."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1), before != NORUN))
    return out


def _gen() -> object:
    sys.path.insert(0, str(DOCS))
    try:
        import gen_reference
    finally:
        sys.path.remove(str(DOCS))
    return gen_reference


BLOCKS = [pytest.param(path, line, code, id=f"{path.name}:{line}")
          for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
          for line, code, runs in python_blocks(path) if runs]


def test_norun_marker_is_honoured(tmp_path: Path) -> None:
    p = tmp_path / "sample.md"
    p.write_text("x\n<!-- norun -->\n```python\nraise SystemExit\n```\n\n```python title=\"t\"\nprint(1)\n```\n")
    assert [(code, runs) for _, code, runs in python_blocks(p)] == [("raise SystemExit\n", False), ("print(1)\n", True)]


def test_docs_have_runnable_examples() -> None:
    names = {p.values[0].name for p in BLOCKS}
    assert {"getting-started.md", "writing-a-method.md", "learner.md", "own-model.md"} <= names


@pytest.mark.parametrize(("path", "line", "code"), BLOCKS)
def test_python_example_runs(path: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Each example runs as written, in a scratch directory (examples may write files such as state.pt)."""
    from edge_cl import methods

    monkeypatch.chdir(tmp_path)
    before = set(methods.available())
    try:
        exec(compile(code, f"{path.relative_to(ROOT)}:{line}", "exec"), {"__name__": "__docs__"})  # noqa: S102
    finally:
        for name in set(methods.available()) - before:  # an example that registers a method leaves no trace
            methods.unregister(name)
    capsys.readouterr()


def test_mkdocs_build_strict(mkdocs_installed: None, tmp_path: Path) -> None:
    """The site builds with every warning an error: broken links and anchors, pages missing from nav."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()


def test_cli_reference_names_every_command_and_option() -> None:
    import click
    import typer.main

    from edge_cl.cli.main import app

    page = _gen().cli_reference()
    group = typer.main.get_command(app)
    commands = [(name, cmd) for name, cmd in group.commands.items()]  # type: ignore[attr-defined]
    commands += [(f"{name} {sub}", sub_cmd) for name, cmd in commands
                 for sub, sub_cmd in getattr(cmd, "commands", {}).items()]
    assert "bench fit" in dict(commands)
    for name, cmd in commands:
        assert f"## `edge-cl {name}`" in page
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert f"`{p.opts[0]}`" in page, (name, p.opts)


def test_config_reference_names_every_key_and_method_setting() -> None:
    from edge_cl import methods
    from edge_cl.config import Config

    page = _gen().config_reference()
    for name, field in Config.model_fields.items():
        assert f"## `[{name}]`" in page
        for key in getattr(field.annotation, "model_fields", {}):
            assert f"| `{key}` |" in page, (name, key)
    for m in methods.available():
        for key in methods.get(m).Settings.model_fields:
            assert f"| `{m}` | `{key}` |" in page, (m, key)
    from edge_cl.config import render_example
    assert render_example().rstrip() in page


def test_links_into_benchmarks_name_real_sections() -> None:
    """Pages cite evidence as benchmarks.md#SECTION; each SECTION must exist in BENCHMARKS.md."""
    sections = set(_gen().section_names())
    cited = {(p.name, a) for p in DOCS.glob("*.md") for a in re.findall(r"benchmarks\.md#([A-Za-z0-9_.-]+)",
                                                                          p.read_text())}
    assert cited
    missing = sorted(c for c in cited if c[1] not in sections)
    assert not missing, f"links to sections BENCHMARKS.md does not have: {missing}"


# A measured figure: a number with a unit of accuracy, time, rate or ratio ("94.01%", "1.8 ms", "3x").
FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?(%|ms\b|us\b|s\b|x\b|samples/s|msg/s)")


def test_readme_quotes_no_figure_that_benchmarks_does_not_hold() -> None:
    """README keeps no hand-copied figure: every figure it quotes must appear in BENCHMARKS.md as written
    (settings that read like figures, such as a default of 16, carry no unit and are not matched)."""
    readme = (ROOT / "README.md").read_text()
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    quoted = {m.group(0) for m in FIGURE.finditer(readme)}
    stray = sorted(f for f in quoted if f not in benchmarks)
    assert not stray, f"README quotes figures BENCHMARKS.md does not hold: {stray}; link the section instead"


def test_figure_pattern_catches_copied_figures() -> None:
    assert [m.group(0) for m in FIGURE.finditer("edge_cl remembers A: 100.0% in 12 s, 1.2x ER, 165 us")] == [
        "100.0%", "12 s", "1.2x", "165 us"]


def test_readme_stays_short_and_keeps_the_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "python3 -m pip install torch==2.13.0 && python3 -m pip install -e '.[demo]' && edge-cl demo" in readme
    assert "python3 -m pip install -e '.[test,bench,fleet,docs]' && python3 -m pytest" in readme


def test_benchmarks_index_is_current() -> None:
    """BENCHMARKS.md's generated index (TOC + summary) matches its sections: `python -m edge_cl.reporting`
    rewrites it; every write_section does too."""
    from edge_cl.reporting import render_index

    text = (ROOT / "BENCHMARKS.md").read_text()
    assert render_index(text) == text, "BENCHMARKS.md's index is stale: run python -m edge_cl.reporting"
    index = text.split("<!-- edge-cl:index-begin -->", 1)[1].split("<!-- edge-cl:index-end -->", 1)[0]
    rows = [ln for ln in index.splitlines() if ln.startswith(("| [", "| `"))]
    assert len(rows) == len(_gen().section_names())  # one line per section


def test_write_section_regenerates_the_index(tmp_path: Path) -> None:
    from edge_cl.reporting import main, write_section

    path = tmp_path / "BENCHMARKS.md"
    write_section("alpha", "### alpha\n\nMeasured on: x; 2026-01-02 03:04 UTC.\n\n| a |\n|---|\n| 1 |", "cmd a", path)
    write_section("beta", "Stream beta, all of it. More text.", "python benchmarks/b.py --x", path)
    text = path.read_text()
    assert "| [alpha](#alpha) | alpha | 2026-01-02 | `cmd a` |" in text
    assert "| `beta` | Stream beta, all of it | - | `python benchmarks/b.py` |" in text
    assert text.index("<!-- edge-cl:index-end -->") < text.index("<!-- edge-cl:begin alpha -->")
    assert main(["--check", str(path)]) == 0
    path.write_text(text.replace("| [alpha](#alpha) | alpha |", "| [alpha](#alpha) | stale |"))
    assert main(["--check", str(path)]) == 1
    assert main([str(path)]) == 0 and main(["--check", str(path)]) == 0
