"""ONNX snapshots off the learning hot path: one worker thread, handed CPU copies of the model."""

from __future__ import annotations

import copy
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_cl.daemon.metrics import Metrics
from edge_cl.export.inputs import buffer_inputs

log = logging.getLogger("edge_cl.daemon.snapshots")

PARITY_SAMPLES = 32  # buffer inputs each snapshot is checked on with onnxruntime


@dataclass(frozen=True)
class SnapshotJob:
    """A CPU eval-mode copy of the model, taken between steps, and what the exporter needs with it."""

    model: nn.Module
    step: int
    sample_inputs: torch.Tensor
    prequential_accuracy: float | None
    # The per-sample shape written into the snapshot; None: the model's own ``input_shape`` attribute.
    input_shape: tuple[int, ...] | None = None


def find_publisher() -> Any | None:
    """``edge_cl.export.publish_snapshot`` when that module is installed, else None."""
    try:
        from edge_cl import export

        return export.publish_snapshot
    except (ImportError, AttributeError):
        return None


def make_job(learner: Any, input_shape: tuple[int, ...] | None = None) -> SnapshotJob:
    """Copy what a snapshot needs out of the learner (call between steps, on the learner's thread).

    Reads the learner and never draws from its generator: a snapshot must not change what is learned next.
    """
    model = copy.deepcopy(learner.export_model()).to("cpu").eval()
    sample = buffer_inputs(learner.buffer, PARITY_SAMPLES)
    if sample is None:
        sample = torch.zeros((1, learner.input_dim))
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
    return SnapshotJob(model, int(learner.step), sample, learner.prequential_accuracy, shape)


def export_one(publish: Any, job: SnapshotJob, directory: Path, keep: int) -> Any:
    """The one call into edge_cl.export (kept small so its arguments are easy to adjust)."""
    return publish(job.model, directory, step=job.step, sample_inputs=job.sample_inputs, keep=keep,
                   prequential_accuracy=job.prequential_accuracy, input_shape=job.input_shape)


class SnapshotWorker:
    """A thread that exports one job at a time; a job offered while one is running is skipped and counted."""

    def __init__(self, publish: Any, directory: Path, keep: int, metrics: Metrics) -> None:
        self._publish = publish
        self.directory = Path(directory)
        self.keep = keep
        self.metrics = metrics
        self._jobs: queue.Queue[SnapshotJob | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="edge-cl-snapshots", daemon=True)
        self._thread.start()

    def offer(self, job: SnapshotJob) -> bool:
        """Queue a job unless one is already waiting; False when skipped."""
        try:
            self._jobs.put_nowait(job)
            return True
        except queue.Full:
            self.metrics.snapshots.labels("skipped").inc()
            return False

    def close(self, final: SnapshotJob | None, timeout: float) -> None:
        """Export ``final`` (waiting for a running export first), then stop; gives up after ``timeout``."""
        if final is not None:
            try:
                self._jobs.put(final, timeout=timeout)
            except queue.Full:
                log.warning("final snapshot skipped: the previous export is still running")
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("snapshot export still running after %.0fs; leaving it", timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                result = export_one(self._publish, job, self.directory, self.keep)
            except Exception as exc:  # noqa: BLE001 - a failed export must never stop the daemon
                self.metrics.snapshots.labels("failed").inc()
                log.warning("snapshot at step %d failed: %s", job.step, exc)
                continue
            if getattr(result, "published", True):
                self.metrics.snapshots.labels("published").inc()
                self.metrics.snapshot_version.set(job.step)
                log.info("snapshot at step %d published: %s", job.step, getattr(result, "path", ""))
            else:
                self.metrics.snapshots.labels("refused").inc()
                log.warning("snapshot at step %d refused: %s", job.step, getattr(result, "reason", "?"))
