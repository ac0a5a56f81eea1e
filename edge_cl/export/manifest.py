"""The snapshot directory's ``manifest.json``: which file is current, its sha256 and shape facts.

Written atomically (temp file, fsync, rename, fsync of the directory), so a reader sees the old
manifest or the new one, never a mix; it is written only after the file it names is in place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edge_cl.atomic_file import DEFAULT_FILE_MODE, atomic_write, fsync_dir  # noqa: F401 - re-exported

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
REQUIRED_KEYS = ("file", "sha256", "step", "input_shape")


class SnapshotError(ValueError):
    """A snapshot directory, manifest or file that cannot be used (missing, malformed or corrupt)."""


class SnapshotIntegrityError(SnapshotError):
    """A snapshot file whose sha256 differs from the one in the manifest."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def write_manifest(directory: Path, entry: dict[str, Any], mode: int = DEFAULT_FILE_MODE) -> None:
    """Atomically replace ``directory/manifest.json`` with ``entry`` (plus the format number)."""
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise ValueError(f"manifest entry lacks keys {missing}; it needs {list(REQUIRED_KEYS)}")
    body = {"format": MANIFEST_FORMAT, **entry}
    atomic_write(directory / MANIFEST_NAME, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The parsed manifest of ``directory``; SnapshotError naming the problem if absent or malformed."""
    path = Path(directory) / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SnapshotError(f"{path} does not exist: no snapshot has been published into {directory} yet "
                            "(or it is not a snapshot directory)") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path} is not valid JSON ({exc}); it was not written by edge_cl") from None
    if not isinstance(manifest, dict) or any(k not in manifest for k in REQUIRED_KEYS):
        raise SnapshotError(f"{path} must be an object with keys {list(REQUIRED_KEYS)}, got {text[:200]!r}")
    name = manifest["file"]
    if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
        raise SnapshotError(f"{path}: 'file' must be a plain file name inside {directory}, got {name!r}")
    return manifest


def read_verified(directory: Path, manifest: dict[str, Any]) -> bytes:
    """The bytes of the file ``manifest`` names, checked against its sha256."""
    path = Path(directory) / manifest["file"]
    data = path.read_bytes()
    actual = sha256_hex(data)
    if actual != manifest["sha256"]:
        raise SnapshotIntegrityError(
            f"snapshot {path} failed its sha256 check: manifest says {manifest['sha256']}, file has {actual}; "
            "the file is corrupt or was modified after publishing. Re-publish a snapshot (edge-cl export) "
            "or restore the file.")
    return data
