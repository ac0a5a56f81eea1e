"""Atomic, pickle-free persistence of state dicts (tensors, numbers, strings, lists and dicts)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from edge_cl.atomic_file import atomic_write


def atomic_save(state: dict[str, Any], path: str | os.PathLike[str], mode: int = 0o640) -> Path:
    """Write ``state`` with torch.save atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: torch.save(state, fh), mode)


def safe_load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file written by :func:`atomic_save` without unpickling arbitrary objects."""
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no learner state at {target}")
    try:
        state = torch.load(target, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        # weights_only refuses anything but tensors and plain containers; a truncated file fails here too
        raise ValueError(f"{target} is not a readable edge_cl state file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'empty'})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{target} does not hold an edge_cl state dict")  # noqa: TRY004
    return state
