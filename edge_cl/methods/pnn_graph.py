"""The network method 'pnn' exports: every held column and the router's choice as a graph input whose default is the
column the learner predicts with (edge_cl.export.graph), as method 'contexts' does with its heads.

The snapshot takes ``input`` and, optionally, ``context`` (int64 scalar, 0 .. K-1, the index into the metadata's
``contexts`` list of column serials); left out, it is the learner's choice when the snapshot was taken, so a plain
inference process predicts exactly as the learner does. Outputs: ``logits`` and ``probabilities`` of the chosen column,
and ``context_logits`` ``[batch, K, num_classes]``, every held column's logits (each column reads the older ones, so
all of them run anyway).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from edge_cl.export.graph import GraphExtras, GraphInput
from edge_cl.methods.contexts_graph import CONTEXT_INPUT, CONTEXT_OUTPUT

if TYPE_CHECKING:
    from edge_cl.methods.pnn import Columns


class ColumnsNetwork(nn.Module):
    """A copy of the learner's network whose :class:`~edge_cl.methods.pnn.Columns` computes every held column and
    returns the chosen one; ``forward(x)`` predicts as the learner."""

    def __init__(self, net: nn.Module, serials: list[int]) -> None:
        super().__init__()
        from edge_cl.methods.pnn import Columns

        self.net = copy.deepcopy(net)
        found = [m for m in self.net.modules() if isinstance(m, Columns)]
        if len(found) != 1:
            raise ValueError(f"the network to export holds {len(found)} pnn Columns modules; expected one")
        self.columns: Columns = found[0]
        if len(serials) != self.columns.newest + 1:
            raise ValueError(f"{len(serials)} column serials for {self.columns.newest + 1} held columns")
        self.serials = list(serials)

    def __getattr__(self, name: str) -> object:
        # What the exporter reads off the model it is given (input_dim, input_shape, spec, standardizer) comes from
        # the copied network.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "net" or "net" not in self._modules:
                raise
            return getattr(self._modules["net"], name)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def forward_graph(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """The chosen column's logits and every held column's ``[B, K, C]``."""
        cols = self.columns
        cols.route = context
        try:
            logits = self.net(x)
            every = cols.every
        finally:
            cols.route, cols.every = None, None
        assert every is not None  # Columns.forward ran in self.net(x) with a route
        return logits, every

    def graph_extras(self) -> GraphExtras:
        """The ``context`` input (default: the learner's column; the gate checks every index), ``context_logits``."""
        k = len(self.serials)
        default = torch.tensor(self.columns.active, dtype=torch.int64)
        values = tuple(torch.tensor(i, dtype=torch.int64) for i in range(k))
        meta = {"contexts": json.dumps(self.serials), "context": str(int(default)),
                "context_input": CONTEXT_INPUT, "context_output": CONTEXT_OUTPUT}
        return GraphExtras(inputs=(GraphInput(CONTEXT_INPUT, default, values),), outputs=(CONTEXT_OUTPUT,),
                           metadata=meta)
