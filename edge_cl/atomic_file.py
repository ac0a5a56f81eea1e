"""Atomic file writes (temp file beside the target, fsync, rename, fsync of the directory): a reader sees the
old file or all of the new one, also after a power loss. No torch here: inference processes import it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Group-readable: inference processes often run as another user of the daemon's group (mkstemp's 0600 blocks them).
DEFAULT_FILE_MODE = 0o640


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object] | bytes,
                 mode: int = DEFAULT_FILE_MODE) -> Path:
    """Write ``path`` from ``write(fh)`` (or the given bytes) with permissions ``mode``, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(write, bytes):
                fh.write(write)
            else:
                write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        # Also on KeyboardInterrupt: no stray temp file left behind by an interrupted write.
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
