"""Publish ONNX snapshots into a directory: export, parity gate, atomic write, manifest, retention.

One writer per directory; any number of readers (:class:`edge_cl.runtime.SnapshotRunner`). The order
of operations is what makes a kill at any moment harmless: the model file is complete and renamed
into place before the manifest names it, and retention never deletes the file the manifest names.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_cl.export.manifest import (
    DEFAULT_FILE_MODE,
    MANIFEST_NAME,
    SnapshotError,
    atomic_write,
    fsync_dir,
    read_manifest,
    sha256_hex,
    write_manifest,
)
from edge_cl.export.onnx_export import Exporter, ExportError, export_onnx, model_input_shape, read_metadata
from edge_cl.export.parity import DEFAULT_TOLERANCE, check_parity

log = logging.getLogger("edge_cl.export")

SNAPSHOT_PREFIX = "model-"
SNAPSHOT_SUFFIX = ".onnx"


@dataclass(frozen=True)
class SnapshotResult:
    """What one publish attempt did; ``reason`` is set when ``published`` is False."""

    published: bool
    path: Path | None
    step: int
    sha256: str | None
    export_seconds: float
    verify_seconds: float
    max_abs_diff: float | None
    reason: str | None = None


class SnapshotPublisher:
    """Publishes snapshots into ``directory`` and counts what it published and what it refused."""

    def __init__(self, directory: str | os.PathLike[str], *, keep: int = 5, tolerance: float = DEFAULT_TOLERANCE,
                 exporter: Exporter | str = Exporter.TORCHSCRIPT, threads: int = 1,
                 file_mode: int = DEFAULT_FILE_MODE):
        if not 0 <= file_mode <= 0o777:
            raise ValueError(f"file_mode={file_mode:#o} must be a permission mode in 0o000..0o777, e.g. 0o640")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep={keep!r} must be an int >= 1 (how many snapshots stay on disk)")
        self.directory = Path(directory)
        self.keep = keep
        self.tolerance = float(tolerance)
        self.exporter = Exporter(exporter)
        self.threads = threads
        self.file_mode = file_mode  # snapshots and manifest; group-readable by default for inference users
        self.published = 0
        self.rejected = 0
        self.last_result: SnapshotResult | None = None

    def publish(self, model: nn.Module, *, step: int, sample_inputs: torch.Tensor | np.ndarray,
                prequential_accuracy: float | None = None,
                input_shape: tuple[int, ...] | None = None) -> SnapshotResult:
        """Export ``model`` (a CPU eval-mode copy taken between steps), gate it on parity with
        ``sample_inputs`` ``[k, D]``, and publish it; a failed export or gate returns published=False.

        ``input_shape``: the per-sample shape recorded in the snapshot (the graph input stays flat ``[k, D]``);
        None takes the model's ``input_shape`` attribute (spec models have one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        shape = model_input_shape(model, input_shape)
        x = torch.as_tensor(sample_inputs).detach().to("cpu", torch.float32)
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != math.prod(shape):
            raise ValueError(f"sample_inputs has shape {tuple(x.shape)}; expected [k, {math.prod(shape)}] with "
                             "k >= 1 recent inputs (e.g. learner.buffer.sample(32)[0].cpu())")
        t0 = time.perf_counter()
        try:
            data = export_onnx(model, step=step, prequential_accuracy=prequential_accuracy, input_shape=shape,
                               exporter=self.exporter)
        except ExportError as exc:
            return self._reject(step, time.perf_counter() - t0, 0.0, None, str(exc))
        export_seconds = time.perf_counter() - t0
        parity = check_parity(model, data, x, tolerance=self.tolerance, threads=self.threads)
        if not parity.ok:
            return self._reject(step, export_seconds, parity.seconds, parity.max_abs_diff, parity.reason)
        digest = sha256_hex(data)
        path = self._target(step, digest)
        meta = read_metadata(data)
        atomic_write(path, data, self.file_mode)
        write_manifest(self.directory, {
            "file": path.name,
            "sha256": digest,
            "step": step,
            "input_shape": list(shape),
            "num_classes": int(meta["num_classes"]),
            "created": meta["created"],
            "prequential_accuracy": prequential_accuracy,
            "max_abs_diff": parity.max_abs_diff,
            "exporter": self.exporter.value,
            "edge_cl_version": meta["version"],
        }, mode=self.file_mode)
        self._retain(current=path.name)
        self.published += 1
        result = SnapshotResult(True, path, step, digest, export_seconds, parity.seconds, parity.max_abs_diff)
        self.last_result = result
        log.info("published snapshot %s (step %d, export %.3fs, verify %.3fs, max diff %.2g)",
                 path.name, step, export_seconds, parity.seconds, parity.max_abs_diff)
        return result

    def _reject(self, step: int, export_s: float, verify_s: float, diff: float | None,
                reason: str | None) -> SnapshotResult:
        self.rejected += 1
        result = SnapshotResult(False, None, step, None, export_s, verify_s, diff, reason or "unknown")
        self.last_result = result
        log.warning("snapshot for step %d not published (previous one stays): %s", step, result.reason)
        return result

    def _target(self, step: int, digest: str) -> Path:
        path = self.directory / f"{SNAPSHOT_PREFIX}{step}{SNAPSHOT_SUFFIX}"
        # Same step twice (e.g. shutdown right after a periodic export): never overwrite a file a
        # reader may be verifying against the current manifest.
        if path.exists():
            path = self.directory / f"{SNAPSHOT_PREFIX}{step}-{digest[:12]}{SNAPSHOT_SUFFIX}"
        return path

    def _retain(self, current: str) -> None:
        snapshots = sorted((p for p in self.directory.glob(f"{SNAPSHOT_PREFIX}*{SNAPSHOT_SUFFIX}") if p.is_file()),
                           key=lambda p: (p.stat().st_mtime_ns, p.name))
        # Publication order, not step order: a learner restored from an older checkpoint starts lower.
        stale = [p for p in snapshots[:-self.keep] if p.name != current]
        # Temp files of a writer killed mid-write (single writer per directory, so none is in flight).
        stale += [p for p in self.directory.glob(f".{SNAPSHOT_PREFIX}*.tmp")]
        stale += [p for p in self.directory.glob(f".{MANIFEST_NAME}.*.tmp")]
        for p in stale:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        if stale:
            fsync_dir(self.directory)


def publish_snapshot(model: nn.Module, directory: Path, *, step: int, sample_inputs: torch.Tensor,
                     keep: int = 5, prequential_accuracy: float | None = None,
                     tolerance: float = DEFAULT_TOLERANCE,
                     exporter: Exporter | str = Exporter.TORCHSCRIPT,
                     file_mode: int = DEFAULT_FILE_MODE,
                     input_shape: tuple[int, ...] | None = None) -> SnapshotResult:
    """Export, verify and atomically publish one snapshot into ``directory`` (see :class:`SnapshotPublisher`)."""
    publisher = SnapshotPublisher(directory, keep=keep, tolerance=tolerance, exporter=exporter, file_mode=file_mode)
    return publisher.publish(model, step=step, sample_inputs=sample_inputs,
                             prequential_accuracy=prequential_accuracy, input_shape=input_shape)


def publish_state(spec: dict[str, Any], state_dict: dict[str, torch.Tensor], directory: Path, *, step: int,
                  sample_inputs: torch.Tensor, **kwargs: Any) -> SnapshotResult:
    """:func:`publish_snapshot` from a model spec and weights, for an exporter in another process."""
    from edge_cl import models

    model = models.build(spec)
    model.load_state_dict(state_dict)
    return publish_snapshot(model.eval(), directory, step=step, sample_inputs=sample_inputs, **kwargs)


def current_snapshot(directory: Path) -> dict[str, Any] | None:
    """The manifest of ``directory`` or None when nothing was published yet."""
    try:
        return read_manifest(directory)
    except SnapshotError:
        if (Path(directory) / MANIFEST_NAME).exists():
            raise
        return None

