"""Entry point of ``edge-cl``; each command lives in its own module and registers itself here."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="edge-cl",
    help="Online, task-free continual learning for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_line() -> str:
    """edge_cl, torch and onnxruntime versions and the device `auto` picks, on one line."""
    import torch

    from edge_cl import __version__
    from edge_cl.devices import resolve_device

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:  # optional at run time: only export parity checks and `predict` need it
        ort = "not installed"
    return f"edge_cl {__version__}, torch {torch.__version__}, onnxruntime {ort}, device auto -> {resolve_device('auto')}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                     help="Print the versions and exit.")] = False) -> None:
    """Online, task-free continual learning for edge devices."""


@app.command()
def version() -> None:
    """Print the edge_cl, torch and onnxruntime versions and the device `auto` picks."""
    typer.echo(version_line())


# Command registration: one line per command module (each module defines `register(app)`).
for _name in ("export", "predict", "run", "check_config", "demo", "bench"):
    __import__(f"edge_cl.cli.{_name}", fromlist=["register"]).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
