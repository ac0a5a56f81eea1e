"""``edge-cl predict SNAPSHOT_OR_DIR --input FILE``: onnxruntime predictions from a snapshot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer


def register(app: typer.Typer) -> None:
    """Add the ``predict`` command to ``app``."""
    app.command("predict")(predict)


def read_inputs(path: Path) -> np.ndarray:
    """Samples from ``.npy`` (``[N, D]`` or ``[D]``) or JSON lines (a list per line, or ``{"x": [...]}``)."""
    return read_inputs_and_ids(path)[0]


def read_inputs_and_ids(path: Path) -> tuple[np.ndarray, list[Any] | None]:
    """Like :func:`read_inputs`, plus the ``"id"`` of each JSON line (None when no line has one)."""
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"{path}: array has shape {arr.shape}; expected [N, D] or [D]")
        return arr.astype(np.float32, copy=False), None
    rows: list[Any] = []
    ids: list[Any] = []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is neither .npy nor UTF-8 JSON lines; write samples as .npy [N, D] or "
                         "one JSON list per line") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc}); each line must be a list of numbers or "
                             '{"x": [...]}') from None
        rows.append(item["x"] if isinstance(item, dict) and "x" in item else item)
        ids.append(item.get("id") if isinstance(item, dict) else None)
    if not rows:
        raise ValueError(f"{path} holds no samples")
    try:
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: lines must be equally long lists of numbers ({exc})") from None
    return x, ids if any(i is not None for i in ids) else None


def parse_graph_inputs(items: list[str]) -> dict[str, Any]:
    """``["context=1"]`` -> ``{"context": 1}`` (each value a JSON number or list); ValueError naming a bad item."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep and name.strip() else None
        except json.JSONDecodeError:
            value = None
        if value is None or isinstance(value, (str, dict, bool)):
            raise ValueError(f"--graph-input {item!r} must be NAME=NUMBER, e.g. context=0")
        out[name.strip()] = value
    return out


def verify_snapshot_file(path: Path) -> str | None:
    """Check a single ``.onnx`` file against the manifest of the snapshot directory it lies in.

    Raises SnapshotIntegrityError when the manifest names this file and its sha256 differs; returns a
    note when the file cannot be verified (no manifest beside it, or an older snapshot the manifest no
    longer names), None when it was verified.
    """
    from edge_cl.export.manifest import MANIFEST_NAME, read_manifest, read_verified

    if not (path.parent / MANIFEST_NAME).is_file():
        return f"{path} is not in a snapshot directory (no {MANIFEST_NAME} beside it): its sha256 was not checked"
    manifest = read_manifest(path.parent)
    if manifest["file"] != path.name:
        return (f"{path} is not the snapshot {path.parent / MANIFEST_NAME} names ({manifest['file']}): "
                "its sha256 was not checked")
    read_verified(path.parent, manifest)
    return None


def predict(
    snapshot: Annotated[Path, typer.Argument(help="A snapshot directory (follows manifest.json) or an .onnx file.",
                                             exists=True)],
    input: Annotated[Path, typer.Option("--input", "-i", exists=True, dir_okay=False,
                                        help=".npy [N, D] or JSON lines of samples.")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help=".npy (ids, or probabilities with --proba) or .jsonl; "
                                                     "default: JSON lines on stdout.")] = None,
    proba: Annotated[bool, typer.Option("--proba", help="Include class probabilities.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per onnxruntime call.")] = 256,
    graph_input: Annotated[list[str] | None, typer.Option(
        "--graph-input", help="NAME=VALUE for an optional input of the snapshot, e.g. context=0 (method 'contexts': "
                              "which context predicts); repeatable. Default: the learner's choice stored in it.")] = None,
) -> None:
    """Predict classes of the samples in --input with onnxruntime on a published snapshot."""
    from rich.console import Console

    from edge_cl.runtime import SnapshotError, SnapshotRunner

    console = Console(stderr=True)
    try:
        if snapshot.is_file():
            note = verify_snapshot_file(snapshot)
            if note is not None:
                console.print(f"[yellow]warning: {note}[/yellow]")
        runner = SnapshotRunner(snapshot)
        x, ids = read_inputs_and_ids(input)
        feed = parse_graph_inputs(graph_input or [])
        probabilities = np.concatenate([runner.predict_proba(x[i:i + batch_size], feed)
                                        for i in range(0, len(x), batch_size)])
    except (SnapshotError, ValueError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    classes = probabilities.argmax(axis=1).astype(np.int64)
    if output is not None and output.suffix == ".npy":
        np.save(output, probabilities if proba else classes)
    else:
        # The input's "id" is carried through so each prediction can be matched to its sample.
        lines = (json.dumps({**({"id": ids[i]} if ids is not None else {}), "class": int(c),
                             **({"probabilities": [round(float(p), 7) for p in row]} if proba else {})})
                 for i, (c, row) in enumerate(zip(classes, probabilities)))
        if output is None:
            sys.stdout.writelines(line + "\n" for line in lines)
        else:
            output.write_text("".join(line + "\n" for line in lines))
    console.print(f"{len(classes)} predictions from snapshot step {runner.step} ({snapshot})")
