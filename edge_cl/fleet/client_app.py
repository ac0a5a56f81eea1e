"""The Flower ClientApp a device's ``flower-supernode`` runs: it reaches the daemon over the loopback channel.

A train message asks for what the device learned: the reply carries the daemon's weights (an ArrayRecord) and
the samples learned since the last merge (``num-examples``, FedAvg's weight). A daemon below its
``fleet.min_new_samples`` sends no weights: the reply carries counts only (:mod:`edge_cl.fleet.replies`) and the
server leaves it out of the average. An evaluate message carries the
global model the round produced: it is handed to the daemon, which merges it between two steps. The ClientApp
holds no model of its own and never sees a sample; its node config names the channel:

    flower-supernode ... --node-config "fleet-address='http://127.0.0.1:8471' fleet-token-file='/etc/edge-cl/fleet.token'"
"""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edge_cl.fleet.local_client import DaemonChannel
from edge_cl.fleet.replies import NUM_EXAMPLES, skipped_metrics

ADDRESS_KEY = "fleet-address"
TOKEN_KEY = "fleet-token-file"
ARRAYS_KEY = "arrays"  # FedAvg's default arrayrecord_key

app = ClientApp()


def channel(context: Context) -> DaemonChannel:
    """The daemon's channel named by the SuperNode's node config; ValueError saying what to pass otherwise."""
    cfg = context.node_config
    address, token_file = cfg.get(ADDRESS_KEY), cfg.get(TOKEN_KEY)
    if not address or not token_file:
        raise ValueError(f"the SuperNode's node config needs {ADDRESS_KEY} and {TOKEN_KEY} (the daemon's [fleet] "
                         f"port and token_file), e.g. flower-supernode --node-config \"{ADDRESS_KEY}="
                         f"'http://127.0.0.1:8471' {TOKEN_KEY}='/etc/edge-cl/fleet.token'\"; got {dict(cfg)}")
    return DaemonChannel(str(address), str(token_file))


@app.train()
def train(msg: Message, context: Context) -> Message:
    # The arrays the server sent are not trained on: the daemon trains continuously on its own stream, and the
    # global model reaches it through the evaluate message that ends each round.
    update = channel(context).read_update()
    if update.arrays is None:  # too few new samples: counts only, no ArrayRecord
        content = RecordDict({"metrics": MetricRecord(skipped_metrics(update.samples, update.min_new_samples))})
        return Message(content=content, reply_to=msg)
    content = RecordDict({
        ARRAYS_KEY: ArrayRecord({name: Array(a) for name, a in update.arrays.items()}),
        "metrics": MetricRecord({NUM_EXAMPLES: update.samples}),
    })
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    arrays = msg.content.array_records.get(ARRAYS_KEY)
    merged = 0
    if arrays:  # empty before any round aggregated (the ServerApp starts from no model)
        channel(context).merge_global({name: a.numpy() for name, a in arrays.items()})
        merged = 1
    # Every device weighs 1 in the averaged "merged" share (the fraction of devices that took the model).
    return Message(content=RecordDict({"metrics": MetricRecord({NUM_EXAMPLES: 1, "merged": merged})}),
                   reply_to=msg)
