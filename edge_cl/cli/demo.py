"""`edge-cl demo`: embedded broker + simulated drifting sensor + the daemon, with a live view."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(duration: Annotated[float, typer.Option(help="Seconds to run.")] = 60.0,
         rate: Annotated[float, typer.Option(help="Samples per second the simulated sensor publishes.")] = 200.0,
         broker: Annotated[str, typer.Option(help="'auto' (Mosquitto when installed, else amqtt), 'mosquitto', "
                                                  "'amqtt'.")] = "auto") -> None:
    """Run the self-contained demo: embedded broker, drifting sensor stream, the daemon, a live view."""
    from edge_cl.daemon.demo import run_demo

    try:
        code = run_demo(duration=duration, rate=rate, broker=broker)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""
    app.command("demo")(demo)
