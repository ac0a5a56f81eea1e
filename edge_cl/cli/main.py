"""Entry point of ``edge-cl``; each command lives in its own module and registers itself here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="edge-cl",
    help="Online, task-free continual learning for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Online, task-free continual learning for edge devices."""


@app.command()
def version() -> None:
    """Print the edge_cl, torch and onnxruntime versions and the device `auto` picks."""
    import torch

    from edge_cl import __version__
    from edge_cl.devices import resolve_device

    typer.echo(f"edge_cl {__version__}, torch {torch.__version__}, device auto -> {resolve_device('auto')}")


# Command registration: one line per command module (each module defines `register(app)`).
for _name in ("export", "predict", "run", "check_config", "demo", "bench"):
    __import__(f"edge_cl.cli.{_name}", fromlist=["register"]).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
