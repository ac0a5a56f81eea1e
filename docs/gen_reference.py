"""Pages of the documentation site that are generated, never typed: the CLI reference (from the typer app in
edge_cl/cli/main.py), the configuration reference (from the pydantic models in edge_cl/config.py and the
method registry), and copies of BENCHMARKS.md, CHANGELOG.md and deploy/README.md.

Used two ways:
- as an MkDocs hook (``hooks:`` in mkdocs.yml): ``on_files`` adds the generated pages to every build, so
  the site can never show a stale reference;
- as a script: ``python docs/gen_reference.py OUTDIR`` writes the same pages as Markdown files, to read them
  without MkDocs.
"""

from __future__ import annotations

import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _cell(text: Any) -> str:
    """One Markdown table cell: no newlines, no bare pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if value is None or value == ():
        return "-"
    return f"`{value!r}`" if not isinstance(value, str) else f'`"{value}"`'


# ---------------------------------------------------------------------------------------------- the CLI
def cli_reference() -> str:
    """Every ``edge-cl`` command: its help text, arguments and options, read from the typer app."""
    import click
    import typer.main

    from edge_cl.cli.main import app

    group = typer.main.get_command(app)
    out = ["# CLI reference", "",
           ("Generated from the typer app (`edge_cl/cli/main.py` and the modules it registers) by "
           "`docs/gen_reference.py` at every docs build; `edge-cl COMMAND --help` prints the same."), "",
           f"`edge-cl` {_cell(group.help or '')}", "",
           "| command | what it does |", "|---|---|"]
    commands: dict[str, Any] = {}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        commands[name] = cmd
        for sub, sub_cmd in getattr(cmd, "commands", {}).items():  # a command group (`bench fit`)
            commands[f"{name} {sub}"] = sub_cmd
    for name, cmd in commands.items():
        first = (cmd.help or "").strip().split("\n\n")[0]
        out.append(f"| [`{name}`](#edge-cl-{name.replace(' ', '-')}) | {_cell(first)} |")
    out.append("")
    for name, cmd in commands.items():
        out += [f"## `edge-cl {name}` {{#edge-cl-{name.replace(' ', '-')}}}", ""]
        help_text = (cmd.help or "").strip()
        if help_text:
            out += [help_text.replace("\b\n", ""), ""]
        args = [p for p in cmd.params if isinstance(p, click.Argument)]
        opts = [p for p in cmd.params if isinstance(p, click.Option)]
        usage = " ".join([f"edge-cl {name}"] + [p.name.upper() if p.required else f"[{p.name.upper()}]"
                                               for p in args] + (["[OPTIONS]"] if opts else []))
        out += ["```text", usage, "```", ""]
        if args:
            out += ["| argument | required | meaning |", "|---|---|---|"]
            for p in args:
                out.append(f"| `{p.name.upper()}` | {'yes' if p.required else 'no'} | "
                           f"{_cell(getattr(p, 'help', None) or '')} |")
            out.append("")
        if opts:
            out += ["| option | type | default | meaning |", "|---|---|---|---|"]
            for p in opts:
                names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
                kind = "flag" if p.is_flag else getattr(p.type, "name", str(p.type))
                default = "required" if p.required else ("-" if callable(p.default) else _default(p.default))
                out.append(f"| {names} | {_cell(kind)} | {default} | {_cell(p.help or '')} |")
            out.append("")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- config
def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not hasattr(annotation, "__args__") else None
    text = text or str(annotation)
    return re.sub(r"\b(?:typing|pathlib|edge_cl\.[\w.]+)\.", "", text).replace("NoneType", "None")


def config_reference() -> str:
    """Every key of the daemon's TOML configuration, by table, with its type, default and description (the
    pydantic models of edge_cl/config.py), every method's settings (the method registry), and the whole
    example file that edge_cl.config.render_example() generates (deploy/config/example.toml)."""
    from edge_cl import methods
    from edge_cl.config import Config, render_example

    out = ["# Configuration reference", "",
           ("Generated from the pydantic models in `edge_cl/config.py` (and the method registry) by "
           "`docs/gen_reference.py` at every docs build. The daemon's TOML file has one table per section "
           "below; `edge-cl check-config FILE` validates a file exactly as `edge-cl run` does. Relative paths "
           "of files the daemon reads resolve against the config file's directory; relative state paths "
           "(`spool.path`, `checkpoint.dir`, `snapshot.dir`) against `$STATE_DIRECTORY` when set, else the "
           "config file's directory."), ""]
    for name, field in Config.model_fields.items():
        section = field.annotation
        out += [f"## `[{name}]`", ""]
        if not hasattr(section, "model_fields"):
            out += [_cell(field.description or ""), "",
                    "See [Your own model](../own-model.md) and the example file below.", ""]
            continue
        doc = " ".join((section.__doc__ or "").split())
        if doc:
            out += [doc, ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key, f in section.model_fields.items():
            required = f.is_required()
            default = "required" if required else _default(f.get_default(call_default_factory=True))
            out.append(f"| `{key}` | `{_cell(_type_name(f.annotation))}` | {default} | {_cell(f.description or '')} |")
        out.append("")
    out += ["## Method settings", "",
            ("Any other key of `[learner]` (or keyword argument of `OnlineLearner`) is a setting of the chosen "
            "method(s), given to every method of the combination that declares it."), "",
            "| method | setting | default | meaning |", "|---|---|---|---|"]
    for mname in methods.available():
        fields = methods.get(mname).Settings.model_fields
        if not fields:
            out.append(f"| `{mname}` | - | - | no settings |")
        for key, f in fields.items():
            out.append(f"| `{mname}` | `{key}` | {_default(f.default)} | {_cell(f.description or '')} |")
    out += ["", "## The example file", "",
            "`deploy/config/example.toml`, as `edge_cl.config.render_example()` writes it:", "",
            "```toml", render_example().rstrip(), "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- copies
def benchmarks_page() -> str:
    """BENCHMARKS.md with an anchor before each section, so pages link to ``benchmarks.md#NAME``."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    text = re.sub(r"^<!-- edge-cl:begin ([A-Za-z0-9_.-]+) -->$", r'<a id="\1"></a>\n\n\g<0>', text, flags=re.MULTILINE)
    # The index links GitHub's heading anchors; on the site each row links the section's own anchor instead.
    return re.sub(r"^\| (?:\[([A-Za-z0-9_.-]+)\]\(#[^)]*\)|`([A-Za-z0-9_.-]+)`) \|",
                  lambda m: f"| [{m.group(1) or m.group(2)}](#{m.group(1) or m.group(2)}) |", text, flags=re.MULTILINE)


def section_names() -> list[str]:
    """Names of BENCHMARKS.md's sections (the anchors of the benchmarks page)."""
    return re.findall(r"^<!-- edge-cl:begin ([A-Za-z0-9_.-]+) -->$", (ROOT / "BENCHMARKS.md").read_text(), re.MULTILINE)


def deploy_page() -> str:
    return (ROOT / "deploy" / "README.md").read_text().replace(
        "# Deploying the edge_cl daemon", "# Deployment reference (deploy/README.md)", 1)


PAGES = {
    "reference/cli.md": cli_reference,
    "reference/config.md": config_reference,
    "benchmarks.md": benchmarks_page,
    "changelog.md": lambda: (ROOT / "CHANGELOG.md").read_text(),
    "deploy-reference.md": deploy_page,
}


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated pages to the build."""
    from mkdocs.structure.files import File

    for uri, make in PAGES.items():
        files.append(File.generated(config, uri, content=make()))
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/gen_reference.py OUTDIR", file=sys.stderr)
        return 2
    for uri, make in PAGES.items():
        target = Path(argv[0]) / uri
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(make())
        print(target)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
