"""The bearer token shared by a daemon's fleet channel and its SuperNode's ClientApp (standard library only: the
ClientApp, started once per Flower message, must not pay for importing torch)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

log = logging.getLogger("edge_cl.fleet")


def read_token(path: Path) -> str:
    """The first line of ``path``; ValueError saying how to fix a missing, unreadable or empty file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"fleet token file {str(path)!r} cannot be read ({exc.strerror}); create it with a random "
                         "token, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > fleet.token; "
                         "chmod 600 fleet.token`") from None
    token = text.splitlines()[0].strip() if text.strip() else ""
    if len(token) < 16:
        raise ValueError(f"fleet token file {str(path)!r} holds no token of at least 16 characters; write a random "
                         "one, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    try:
        if Path(path).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("fleet token file %s is readable by other users; chmod 600 it", path)
    except OSError:
        pass
    return token
