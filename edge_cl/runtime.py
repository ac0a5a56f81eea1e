"""Inference on published snapshots with onnxruntime, following the snapshot directory's manifest.

Imports neither torch nor the learner: this is what inference processes run.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_cl.export.manifest import (
    MANIFEST_NAME,
    SnapshotError,
    SnapshotIntegrityError,
    read_manifest,
    read_verified,
)

log = logging.getLogger("edge_cl.runtime")

INPUT_NAME = "input"


def make_session(model: bytes | str | os.PathLike[str], *, threads: int = 1) -> Any:
    """An onnxruntime CPU session for a serialized model or a path, with ``threads`` intra-op threads."""
    import onnxruntime as ort

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads={threads!r} must be an int >= 0 (0 lets onnxruntime choose)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Tiny models: spinning worker threads only burn the cores the learner needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Errors only: a snapshot's optional inputs (method 'contexts': `context`) are initializers that are also graph
    # inputs, which onnxruntime warns about on every load although the graph means exactly that (a default).
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


class SnapshotRunner:
    """onnxruntime session on the latest snapshot of a directory (or on one ``.onnx`` file).

    In a directory, the manifest is checked at most every ``poll_seconds`` during predictions; a new
    one is loaded after its sha256 is verified. A bad new snapshot is refused and logged (the current
    one keeps serving); :meth:`refresh` raises instead, and so does the constructor.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 1, poll_seconds: float = 0.5):
        if not (poll_seconds >= 0 and math.isfinite(poll_seconds)):
            raise ValueError(f"poll_seconds={poll_seconds!r} must be a finite number >= 0")
        self.path = Path(path)
        self.threads = threads
        self.poll_seconds = float(poll_seconds)
        self.manifest: dict[str, Any] | None = None
        self.reloads = 0
        self.refused = 0
        self.last_error: str | None = None
        self._session: Any = None
        self._seen: tuple[int, int, int] | None = None
        self._refused_sig: tuple[int, int, int] | None = None
        self._next_check = 0.0
        if self.path.is_dir():
            self.refresh()
        elif self.path.is_file():
            self._load(self.path.read_bytes(), None)
        else:
            raise SnapshotError(f"{self.path} is neither a snapshot directory nor an .onnx file")

    @property
    def step(self) -> int | None:
        """Learner step of the loaded snapshot (from the manifest, or the file's metadata)."""
        if self.manifest is not None:
            return int(self.manifest["step"])
        value = self.metadata.get("edge_cl.step")
        return int(value) if value else None

    @property
    def metadata(self) -> dict[str, str]:
        """The loaded model's ONNX metadata (``edge_cl.*`` keys)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    @property
    def input_dim(self) -> int:
        """Flat input width D the model expects."""
        return int(self._session.get_inputs()[0].shape[1])

    def refresh(self) -> bool:
        """Load the snapshot the manifest names if it changed; True if a new one was loaded.

        Raises SnapshotError / SnapshotIntegrityError (sha256 mismatch) naming the file.
        """
        if not self.path.is_dir():
            return False
        signature = self._signature()
        if signature == self._seen:
            return False
        # The writer may delete an old file between our manifest read and open: read again.
        for attempt in range(3):
            manifest = read_manifest(self.path)
            try:
                data = read_verified(self.path, manifest)
            except FileNotFoundError:
                if attempt == 2:
                    raise SnapshotError(f"{self.path / manifest['file']} named by the manifest does not exist") \
                        from None
                continue
            self._load(data, manifest)
            self._seen = signature
            self.reloads += 1
            log.info("loaded snapshot %s (step %s)", manifest["file"], manifest["step"])
            return True
        return False  # pragma: no cover - loop always returns or raises

    def predict_proba(self, x: np.ndarray, inputs: Mapping[str, Any] | None = None) -> np.ndarray:
        """Class probabilities, float32 ``[B, C]`` for ``x`` ``[B, D]`` (or one sample ``[D]``). ``inputs``: values
        of the snapshot's optional inputs (:attr:`optional_inputs`, e.g. ``{"context": 1}`` for method 'contexts');
        those left out take the learner's choice stored in the snapshot."""
        self._maybe_refresh()
        feed = {INPUT_NAME: self._prepare(x), **self._optional(inputs or {})}
        return np.asarray(self._session.run(["probabilities"], feed)[0])

    def predict(self, x: np.ndarray, inputs: Mapping[str, Any] | None = None) -> np.ndarray:
        """Class ids, int64 ``[B]`` (``inputs`` as for :meth:`predict_proba`)."""
        return self.predict_proba(x, inputs).argmax(axis=1).astype(np.int64)

    @property
    def optional_inputs(self) -> dict[str, str]:
        """The snapshot's inputs besides ``input`` that have a default (name -> onnx type), e.g. ``context``."""
        return {i.name: i.type for i in self._session.get_overridable_initializers()}

    def _optional(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        offered = self.optional_inputs
        unknown = sorted(set(inputs) - set(offered))
        if unknown:
            raise ValueError(f"inputs {unknown} are not optional inputs of this snapshot; it offers "
                             f"{sorted(offered) or 'none'} (edge_cl.graph_inputs in its metadata)")
        return {k: np.asarray(v, dtype=np.int64 if "int64" in offered[k] else np.float32) for k, v in inputs.items()}

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        dim = self.input_dim
        if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] == 0:
            raise ValueError(f"input has shape {np.shape(x)}; this snapshot expects [B, {dim}] (or [{dim}])")
        return np.ascontiguousarray(arr)

    def _maybe_refresh(self) -> None:
        if self.manifest is None or not self.path.is_dir():
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.poll_seconds
        signature: tuple[int, int, int] | None = None
        try:
            signature = self._signature()
            if signature in (self._seen, self._refused_sig):
                return
            self.refresh()
        except (SnapshotError, OSError) as exc:
            if signature is None and self.last_error == str(exc):
                return  # manifest still missing: already reported
            # Keep serving the verified snapshot we have; try again when the manifest changes.
            self._refused_sig = signature
            self.refused += 1
            self.last_error = str(exc)
            log.error("refused new snapshot, still serving step %s: %s", self.step, exc)

    def _signature(self) -> tuple[int, int, int]:
        try:
            st = (self.path / MANIFEST_NAME).stat()
        except FileNotFoundError:
            raise SnapshotError(f"{self.path / MANIFEST_NAME} does not exist: nothing published in {self.path} "
                                "yet") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, data: bytes, manifest: dict[str, Any] | None) -> None:
        try:
            session = make_session(data, threads=self.threads)
        except Exception as exc:  # onnxruntime's exception types are its own
            raise SnapshotError(f"onnxruntime cannot load the snapshot in {self.path}: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 2:
            raise SnapshotError(f"snapshot in {self.path} is not an edge_cl snapshot: inputs "
                                f"{[(i.name, i.shape) for i in inputs]}, expected one 'input' [batch, D]")
        self._session = session
        self.manifest = manifest


__all__ = ["SnapshotError", "SnapshotIntegrityError", "SnapshotRunner", "make_session"]
