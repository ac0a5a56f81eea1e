"""Fleet learning: devices average what they learned through Flower; their samples never leave them.

The daemon owns its learner and keeps learning. A loopback channel (:mod:`edge_cl.fleet.channel`) lets a
Flower ClientApp, run by a ``flower-supernode`` beside the daemon, read the weights learned since the last
merge and hand back the global model, which the daemon's learning thread merges between two steps
(:mod:`edge_cl.fleet.merge`). Only this package's ``client_app`` and ``server_app`` import ``flwr`` (the
``fleet`` extra); the daemon side needs the standard library alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FleetChannel", "FleetConfig"]

if TYPE_CHECKING:
    from edge_cl.fleet.channel import FleetChannel
    from edge_cl.fleet.settings import FleetConfig


def __getattr__(name: str) -> Any:
    # Lazy: a SuperNode starts the ClientApp in a new process for every message, and the ClientApp needs neither
    # torch (the channel's merge) nor pydantic (the settings); importing them cost it ~2 s a message.
    if name == "FleetChannel":
        from edge_cl.fleet.channel import FleetChannel

        return FleetChannel
    if name == "FleetConfig":
        from edge_cl.fleet.settings import FleetConfig

        return FleetConfig
    raise AttributeError(f"module 'edge_cl.fleet' has no attribute {name!r}")
