"""Writes benchmark results into BENCHMARKS.md, one named section per benchmark, so numbers there
always come from a run of the tool and never from hand edits."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: concurrent writers are not serialised
    fcntl = None  # type: ignore[assignment]

HEADER = ("# Benchmarks\n\nEvery section below is written by a benchmark command (named in the section); "
          "do not edit numbers by hand. Re-run the command to refresh a section.\n")


def machine_line(device: str = "cpu") -> str:
    """One line naming where a result was measured (host CPU count, Python, torch, device)."""
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = ""
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return (f"{cpu}, {os.cpu_count()} logical CPUs{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}; {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}")


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``target`` while it is read, changed and replaced: benchmarks run in
    parallel each rewrite the whole file, and without the lock one could write back a copy that lacks the
    section another had just written."""
    if fcntl is None:
        yield
        return
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def write_section(name: str, body: str, command: str, path: str | os.PathLike[str] = "BENCHMARKS.md") -> Path:
    """Replace (or append) the section ``name`` of ``path`` with ``body``, atomically.

    ``command`` is the exact command that produced the numbers; it is printed in the section.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"section name {name!r} must be letters, digits, '.', '_' or '-'")
    target = Path(path)
    with _exclusive(target):
        text = target.read_text() if target.exists() else HEADER
        begin, end = f"<!-- edge-cl:begin {name} -->", f"<!-- edge-cl:end {name} -->"
        section = f"{begin}\n{body.rstrip()}\n\nProduced by: `{command}`\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=".BENCHMARKS.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    return target
