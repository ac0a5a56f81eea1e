"""Can the daemon write where its config says state goes? Checked before start, by creating a file there.

Write permission cannot be read from a mode: a read-only mount (systemd's ProtectSystem=strict makes /etc one)
refuses root too, and root passes every mode check. So each directory is created when missing and a
temporary file is made and removed in it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edge_cl.config import STATE_DIRECTORY_ENV, Config

HINT = (f"relative state paths resolve against ${STATE_DIRECTORY_ENV} when it is set (systemd's StateDirectory=, "
        "/var/lib/edge-cl in the shipped unit), else against the config file's directory: give writable absolute "
        f"paths, or set ${STATE_DIRECTORY_ENV}")


def writable_problem(key: str, directory: Path, value: Path | None = None) -> str | None:
    """Why the daemon cannot write files in ``directory``, or None when it can; the line starts with the config
    ``key`` and its ``value`` (default: the directory itself)."""
    named = f"{key}={str(value if value is not None else directory)!r}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{named}: cannot create the directory {str(directory)!r} ({exc.strerror})"
    if not directory.is_dir():
        return f"{named}: {str(directory)!r} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".edge-cl-preflight-")
    except OSError as exc:
        return f"{named}: cannot write in the directory {str(directory)!r} ({exc.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


def problems(cfg: Config) -> list[str]:
    """One line per state path the daemon could not write, and a last line saying where they resolve."""
    spool = cfg.spool.path
    found = [p for key, d in cfg.state_paths().items()
             if (p := writable_problem(key, d, spool if key == "spool.path" else None)) is not None]
    if spool.is_dir():
        found.append(f"spool.path={str(spool)!r}: it is a directory; give the path of the SQLite file")
    elif spool.exists() and not os.access(spool, os.R_OK | os.W_OK):
        found.append(f"spool.path={str(spool)!r}: the file is not readable and writable by this user "
                     f"(uid {os.getuid()}); fix its owner or mode")
    return [*found, HINT] if found else []
