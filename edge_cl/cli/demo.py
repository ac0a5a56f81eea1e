"""`edge-cl demo`: embedded broker + simulated drifting sensor + the daemon, with a live view."""

from __future__ import annotations

import typer


def demo(duration: float = typer.Option(60.0, help="Seconds to run.")) -> None:
    """Run the self-contained demo (embedded broker, drifting sensor stream, live view)."""
    from edge_cl.daemon.demo import run_demo

    raise typer.Exit(run_demo(duration=duration))


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""
    app.command("demo")(demo)
