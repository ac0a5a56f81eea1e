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
from typing import TYPE_CHECKING

from torch import Tensor, nn

from edge_cl.export.graph import ExportedNetwork, GraphExtras, context_extras

if TYPE_CHECKING:
    from edge_cl.methods.pnn import Columns


class ColumnsNetwork(ExportedNetwork):
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
        return context_extras(self.serials, self.columns.active)
