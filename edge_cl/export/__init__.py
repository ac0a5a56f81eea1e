"""ONNX snapshots of a learner's model: export, parity gate, atomic publish with a manifest."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_cl.export.graph import GraphExtras, GraphInput
    from edge_cl.export.manifest import SnapshotError, SnapshotIntegrityError, read_manifest
    from edge_cl.export.onnx_export import Exporter, ExportError, export_onnx, read_metadata
    from edge_cl.export.parity import ParityResult, check_parity
    from edge_cl.export.publish import (
        SnapshotPublisher,
        SnapshotResult,
        current_snapshot,
        publish_snapshot,
        publish_state,
    )

# Lazy so that inference processes (edge_cl.runtime reads manifests) need not import torch for it.
_WHERE = {
    "GraphExtras": "graph", "GraphInput": "graph",
    "SnapshotError": "manifest", "SnapshotIntegrityError": "manifest", "read_manifest": "manifest",
    "Exporter": "onnx_export", "ExportError": "onnx_export", "export_onnx": "onnx_export",
    "read_metadata": "onnx_export", "ParityResult": "parity", "check_parity": "parity",
    "SnapshotPublisher": "publish", "SnapshotResult": "publish", "current_snapshot": "publish",
    "publish_snapshot": "publish", "publish_state": "publish",
}
__all__ = [
    "ExportError", "Exporter", "GraphExtras", "GraphInput", "ParityResult", "SnapshotError", "SnapshotIntegrityError", "SnapshotPublisher",
    "SnapshotResult", "check_parity", "current_snapshot", "export_onnx", "publish_snapshot", "publish_state",
    "read_manifest", "read_metadata",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"edge_cl.export.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'edge_cl.export' has no attribute {name!r}")
