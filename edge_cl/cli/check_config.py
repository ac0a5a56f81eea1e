"""`edge-cl check-config CONFIG`: validate a config and print it resolved, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def check_config(config: Annotated[Path, typer.Argument(help="TOML config file.")],
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False
                 ) -> None:
    """Validate CONFIG as `run` does before it starts (the files and variables it names, the directories it
    writes, the byte budget; exit 1 with every problem listed), and print the resolved config."""
    from rich.console import Console
    from rich.table import Table

    from edge_cl.config import ConfigError, load_config, state_base
    from edge_cl.daemon.preflight import check

    try:
        cfg = load_config(config)
        check(cfg)  # the same file and environment checks `run` makes before it starts
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    data = cfg.masked()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"{config}: valid", show_lines=False)
    table.add_column("key")
    table.add_column("value")
    for section, values in data.items():
        if isinstance(values, dict):
            for k, v in values.items():
                table.add_row(f"{section}.{k}", json.dumps(v) if not isinstance(v, str) else v)
        else:
            table.add_row(section, json.dumps(values))
    Console().print(table)
    typer.echo(f"relative state paths (spool, checkpoints, snapshots) resolve against "
               f"{state_base(config.resolve().parent)[1]}")


def register(app: typer.Typer) -> None:
    """Add the `check-config` command."""
    app.command("check-config")(check_config)
