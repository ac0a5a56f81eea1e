"""`edge-cl demo`: embedded broker, a sensor whose concept changes and comes back, edge_cl beside plain
fine-tuning, a live view, and a plot, summary and runnable config left in --out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(duration: Annotated[float, typer.Option(help="Seconds to run (concepts A, B, C, A: a quarter each).")] = 60.0,
         rate: Annotated[float, typer.Option(help="Samples per second the simulated sensor publishes.")] = 200.0,
         broker: Annotated[str, typer.Option(help="'auto' (Mosquitto when installed, else amqtt), 'mosquitto', "
                                                  "'amqtt'.")] = "auto",
         out: Annotated[Path, typer.Option(help="Directory for accuracy.svg, summary.json and edge-cl.toml.")]
         = Path("edge-cl-demo")) -> None:
    """Show continual learning: edge_cl and plain fine-tuning on the same drifting stream, side by side;
    ends with how much of the first concept each kept when it comes back."""
    from edge_cl.daemon.demo import run_demo

    try:
        result = run_demo(duration=duration, rate=rate, broker=broker, out=out)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add the `demo` command."""
    app.command("demo")(demo)
