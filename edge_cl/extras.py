"""Optional dependencies: a device installs what it runs (`pip install edge-cl`), and a feature that needs more says
which extra brings it. Extras: `river` (the river adapter, the ADWIN / Page-Hinkley triggers), `dynamo` (the dynamo
ONNX exporter), `bench` (plots, river's peers and synthetic streams), `demo` (the embedded broker), `fleet` (Flower).
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """A feature's optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingExtra` saying ``pip install 'edge-cl[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name not in (None, top) and not (exc.name or "").startswith(top + "."):
            raise  # the package is there but something it imports is broken: show that error
        raise MissingExtra(f"{feature} needs the {top!r} package, which is not installed: pip install "
                           f"'edge-cl[{extra}]' (or pip install {top})") from exc
