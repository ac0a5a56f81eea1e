"""Fleet learning: devices average what they learned through Flower; their samples never leave them.

The daemon owns its learner and keeps learning. A loopback channel (:mod:`edge_cl.fleet.channel`) lets a
Flower ClientApp, run by a ``flower-supernode`` beside the daemon, read the weights learned since the last
merge and hand back the global model, which the daemon's learning thread merges between two steps
(:mod:`edge_cl.fleet.merge`). Only this package's ``client_app`` and ``server_app`` import ``flwr`` (the
``fleet`` extra); the daemon side needs the standard library alone.
"""

from edge_cl.fleet.channel import FleetChannel
from edge_cl.fleet.settings import FleetConfig

__all__ = ["FleetChannel", "FleetConfig"]
