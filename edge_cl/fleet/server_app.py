"""The Flower ServerApp: FedAvg over the devices' weights, weighted by the samples each learned since the
last merge, for ``num-server-rounds`` rounds; each round ends by sending the global model to every device
(FedAvg's evaluate message, which the ClientApp hands to its daemon to merge; the train message carries no model,
so a round costs a device one model down). A device below its
``fleet.min_new_samples`` answers the train message without weights: it is left out of the average (logged with
the reason, counted in the round's ``nodes-skipped`` metric) and still receives the global model.

Run config (``flwr run ... --run-config``): ``num-server-rounds`` (3), ``min-nodes`` (2): devices a round
waits for, ``round-timeout-s`` (600), ``server-lr`` (1): the server's step on each round's average
(:func:`edge_cl.fleet.aggregate.server_step`; 1 is plain FedAvg).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.common.logger import log as flwr_log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from edge_cl.fleet.aggregate import sample_weighted_average, server_step
from edge_cl.fleet.replies import skip_reason

log = logging.getLogger("edge_cl.fleet")

app = ServerApp()
NODES_SKIPPED = "nodes-skipped"  # in a round's train metrics: devices that sent no weights


class SampleWeightedFedAvg(FedAvg):
    """FedAvg whose average is :func:`edge_cl.fleet.aggregate.sample_weighted_average` (the function the fleet
    benchmark runs) and that keeps the current global model when no device learned anything since the last merge
    (plain FedAvg would divide by a total weight of zero). With ``server_lr`` != 1 the new global model is
    :func:`edge_cl.fleet.aggregate.server_step` from the previous one towards the average."""

    def __init__(self, *args: Any, server_lr: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server_step({}, {}, server_lr)  # refuses an out-of-range rate before any round runs
        self.server_lr = float(server_lr)
        self.global_arrays: dict[str, np.ndarray] | None = None  # the last global model; None before round 1

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        # No arrays in the train message: the ClientApp does not train on them (its daemon learns on its own stream)
        # and the global model reaches every device in the evaluate message; FedAvg would send it in both, one
        # model more down per device and round.
        return super().configure_train(server_round, ArrayRecord(), config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies, skipped = split_skipped(server_round, replies)
        if not replies:
            if skipped:
                flwr_log(logging.WARNING, "round %d: every device sat the round out (below its "
                         "fleet.min_new_samples); the global model is kept", server_round)
            return None, (MetricRecord({NODES_SKIPPED: skipped}) if skipped else None)
        arrays, metrics = self._aggregate(server_round, replies)
        if skipped:
            metrics = MetricRecord({**(metrics or {}), NODES_SKIPPED: skipped})
        return arrays, metrics

    def _aggregate(self, server_round: int,
                   replies: list[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid = [m for m in replies if not m.has_error()]
        total = sum(float(next(iter(m.content.metric_records.values())).get(self.weighted_by_key, 0))
                    for m in valid if m.content.metric_records)
        if valid and total <= 0:
            log.warning("round %d: no device learned a sample since the last merge; the global model is kept",
                        server_round)
            return None, None
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        models = [{k: a.numpy() for rec in c.array_records.values() for k, a in rec.items()} for c in contents]
        samples = [float(next(iter(c.metric_records.values()))[self.weighted_by_key]) for c in contents]
        average = sample_weighted_average(models, samples)
        if average is None:
            return None, self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        try:
            self.global_arrays = server_step(self.global_arrays, average, self.server_lr)
        except ValueError as exc:  # the fleet changed model between two rounds: no step to take from the old one
            log.warning("round %d: %s; this round's average is the new global model", server_round, exc)
            self.global_arrays = server_step(None, average, self.server_lr)
        arrays = ArrayRecord({k: Array(v) for k, v in self.global_arrays.items()})
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)


def split_skipped(server_round: int, replies: Iterable[Message]) -> tuple[list[Message], int]:
    """The replies that take part (or failed: FedAvg logs those), and how many devices sat the round out (no
    weights, :func:`edge_cl.fleet.replies.skip_reason` says why; each is logged)."""
    taking_part, skipped = [], 0
    for m in replies:
        metrics = next(iter(m.content.metric_records.values()), {}) if not m.has_error() else {}
        reason = skip_reason(metrics)
        if reason is None or m.content.array_records:  # weights sent: it takes part whatever it says
            taking_part.append(m)
            continue
        skipped += 1
        # Flower's own logger: `flwr run --stream` shows it beside the round's "Received N results" line.
        flwr_log(logging.INFO, "round %d: node %d sat the round out: it %s", server_round, m.metadata.src_node_id,
                 reason)
    return taking_part, skipped


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    rounds, nodes = int(cfg.get("num-server-rounds", 3)), int(cfg.get("min-nodes", 2))
    strategy = SampleWeightedFedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=nodes,
                                    min_evaluate_nodes=nodes, min_available_nodes=nodes,
                                    server_lr=float(cfg.get("server-lr", 1.0)))
    # No initial model: the devices' own weights, averaged, are the first global one.
    strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=rounds,
                   timeout=float(cfg.get("round-timeout-s", 600)))
