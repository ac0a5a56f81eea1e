"""Importance regularisers: one file per method, registered by name here."""

from __future__ import annotations

from edge_cl.importance.base import Importance
from edge_cl.importance.ewc import OnlineEWC
from edge_cl.importance.mas import OnlineMAS

REGISTRY: dict[str, type[Importance]] = {"ewc": OnlineEWC, "mas": OnlineMAS}
# Penalty strengths that work for the default models (importance scales differ per method).
DEFAULT_LAMBDA: dict[str, float] = {"ewc": 10.0, "mas": 0.2}

__all__ = ["DEFAULT_LAMBDA", "REGISTRY", "Importance", "OnlineEWC", "OnlineMAS", "get"]


def get(name: str) -> type[Importance]:
    """The importance class registered as ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"importance={name!r} is unknown; use one of {sorted(REGISTRY)} or None") from None
