"""The Flower ServerApp: FedAvg over the devices' weights, weighted by the samples each learned since the
last merge, for ``num-server-rounds`` rounds; each round ends by sending the global model to every device
(FedAvg's evaluate message, which the ClientApp hands to its daemon to merge).

Run config (``flwr run ... --run-config``): ``num-server-rounds`` (3), ``min-nodes`` (2): devices a round
waits for, ``round-timeout-s`` (600).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

log = logging.getLogger("edge_cl.fleet")

app = ServerApp()


class SampleWeightedFedAvg(FedAvg):
    """FedAvg that keeps the current global model when no device learned anything since the last merge (plain
    FedAvg would divide by a total weight of zero)."""

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        valid = [m for m in replies if not m.has_error()]
        total = sum(float(next(iter(m.content.metric_records.values())).get(self.weighted_by_key, 0))
                    for m in valid if m.content.metric_records)
        if valid and total <= 0:
            log.warning("round %d: no device learned a sample since the last merge; the global model is kept",
                        server_round)
            return None, None
        return super().aggregate_train(server_round, replies)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    rounds, nodes = int(cfg.get("num-server-rounds", 3)), int(cfg.get("min-nodes", 2))
    strategy = SampleWeightedFedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=nodes,
                                    min_evaluate_nodes=nodes, min_available_nodes=nodes)
    # No initial model: the devices' own weights, averaged, are the first global one.
    strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=rounds,
                   timeout=float(cfg.get("round-timeout-s", 600)))
