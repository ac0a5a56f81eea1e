"""Checkpoint files with an integrity record, newest-good selection and retention.

Each ``ckpt-<position>.pt`` gets a sidecar ``ckpt-<position>.pt.sha256.json`` holding the sha256 of the
file's bytes and the lowest spool seq the checkpoint may still need (``safe``). A checkpoint whose bytes
differ from its record (a flipped bit still loads with ``weights_only=True``, a tensor silently changed)
is refused and moved aside; the daemon falls back to the newest one that verifies. Spooled payloads are
freed only up to the ``safe`` seq of the *oldest* kept checkpoint, so falling back to any kept
checkpoint re-learns everything after it from the spool.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_cl.atomic_file import atomic_write

CKPT = re.compile(r"ckpt-(\d{12})\.pt$")
RECORD_SUFFIX = ".sha256.json"
DAMAGED_SUFFIX = ".damaged"


@dataclass(frozen=True)
class Refused:
    """A checkpoint that failed its integrity check, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class CheckpointJob:
    """A checkpoint to write: its path, the learner's state copied at one moment (with the daemon's progress in
    its ``extra``), the lowest spool seq it may still need, and the model step."""

    path: Path
    state: dict[str, Any]
    safe: int
    step: int


def copied(obj: Any) -> Any:
    """``obj`` (a state dict) with every tensor and array copied: the learner changes the originals in place at its
    next step, while the copy is still being written (``state_dict`` hands out its optimiser's and buffer's own)."""
    if isinstance(obj, dict):
        return {k: copied(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [copied(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(copied(v) for v in obj)
    clone = getattr(obj, "clone", None)  # a torch tensor (torch is not imported here: inference processes)
    if clone is not None and hasattr(obj, "detach"):
        return obj.detach().clone()
    copy = getattr(obj, "copy", None)  # a numpy array
    if copy is not None and hasattr(obj, "dtype"):
        return copy()
    return obj


def record_path(path: Path) -> Path:
    """The integrity record beside checkpoint ``path``."""
    return path.with_name(path.name + RECORD_SUFFIX)


def listing(directory: Path) -> list[Path]:
    """Checkpoint files of ``directory``, oldest (lowest spool position) first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CKPT.search(p.name))]
    return [p for _, p in sorted(found)]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_record(path: Path, safe: int) -> None:
    """Write the integrity record of the just-saved checkpoint ``path`` (atomic: temp, fsync, rename)."""
    body = json.dumps({"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                       "safe": int(safe)}).encode()
    atomic_write(record_path(path), lambda fh: fh.write(body))


def read_record(path: Path) -> dict[str, Any] | None:
    """The integrity record of ``path``, or None when it has none (or an unreadable one)."""
    try:
        rec = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("sha256"), str) else None


def check(path: Path, *, records_expected: bool) -> str | None:
    """Why ``path`` must not be loaded, or None when it may be.

    ``records_expected``: other checkpoints of the directory have records, so a missing one means the
    daemon stopped between writing the checkpoint and its record (or the record was deleted): refused.
    Checkpoints of an older edge_cl, none with records, are accepted (the caller says they are unverified).
    """
    rec = read_record(path)
    if rec is None:
        if records_expected:
            return f"it has no integrity record {record_path(path).name} (interrupted save or deleted record)"
        return None
    actual = file_sha256(path)
    if actual != rec["sha256"]:
        return (f"its sha256 is {actual} but {record_path(path).name} says {rec['sha256']}: the file is "
                "damaged (disk or copy error) or was modified after it was written")
    return None


def newest_good(directory: Path) -> tuple[Path | None, list[Refused], bool]:
    """(newest checkpoint that verifies or None, the newer ones refused, whether it is verified by a record)."""
    found = listing(directory)
    expected = any(read_record(p) is not None for p in found)
    refused: list[Refused] = []
    for path in reversed(found):
        why = check(path, records_expected=expected)
        if why is None:
            return path, refused, expected
        refused.append(Refused(path, why))
    return None, refused, expected


def set_aside(path: Path) -> Path:
    """Rename a refused checkpoint (and its record) out of the way, keeping it for inspection."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    os.replace(path, target)
    rec = record_path(path)
    if rec.exists():
        os.replace(rec, rec.with_name(rec.name + DAMAGED_SUFFIX))
    return target


def prune(directory: Path, keep: int) -> int:
    """Delete all but the ``keep`` newest checkpoints (with their records); the lowest ``safe`` seq kept.

    The returned seq is what the spool may free up to: every kept checkpoint can still be resumed from.
    """
    found = listing(directory)
    for old in found[:-keep]:
        old.unlink(missing_ok=True)
        record_path(old).unlink(missing_ok=True)
    safes = [int(rec["safe"]) for p in found[-keep:] if (rec := read_record(p)) is not None and "safe" in rec]
    return min(safes) if safes else 0
