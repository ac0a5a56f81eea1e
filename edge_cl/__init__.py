"""edge_cl: online, task-free continual learning for edge devices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["OnlineLearner", "__version__", "models"]

if TYPE_CHECKING:
    from edge_cl import models
    from edge_cl.learner import OnlineLearner


def __getattr__(name: str) -> Any:
    # Lazy so that `import edge_cl` stays cheap (no torch) for the CLI and onnxruntime-only processes.
    if name == "OnlineLearner":
        from edge_cl.learner import OnlineLearner

        return OnlineLearner
    if name == "models":
        import importlib

        return importlib.import_module("edge_cl.models")
    raise AttributeError(f"module 'edge_cl' has no attribute {name!r}")
