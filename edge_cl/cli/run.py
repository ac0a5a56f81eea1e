"""`edge-cl run CONFIG`: the daemon in the foreground (systemd runs it like this).

Exit codes (deploy/README.md, and the systemd unit's RestartPreventExitStatus): 0 clean stop; 2 the broker
refused us for good (credentials, TLS); 3 anything else: configuration, checkpoint, internal error.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer


def run(config: Annotated[Path, typer.Argument(help="TOML config file (see deploy/config/example.toml).")]) -> None:
    """Run the daemon until SIGTERM/SIGINT; resumes from the latest checkpoint automatically."""
    from edge_cl.config import ConfigError, load_config
    from edge_cl.daemon.logsetup import configure_logging
    from edge_cl.daemon.preflight import check
    from edge_cl.daemon.service import EXIT_ERROR, Daemon, apply_process_settings, settle_heap

    try:
        cfg = load_config(config)
        check(cfg)  # missing TLS/password files name their key here, not as a bare errno later
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    configure_logging(cfg.logging.level, cfg.logging.format)
    apply_process_settings(cfg)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon = Daemon(cfg)
        settle_heap()
        code = daemon.run(stop)
    except ValueError as exc:  # checkpoint mismatch, budget too small, unset password_env ...: no traceback
        typer.echo(f"error: {exc}", err=True)
        code = EXIT_ERROR
    except Exception:
        logging.getLogger("edge_cl.daemon").exception("the daemon stopped on an internal error")
        code = EXIT_ERROR
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the `run` command."""
    app.command("run")(run)
