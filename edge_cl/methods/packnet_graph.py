"""The network method 'packnet' exports: one copy of the network per held context, each with the weights that context
predicts with (its own and older contexts' kept weights, its biases and other parameters), and the router's choice as a
graph input whose default is the context the learner predicts with (edge_cl.export.graph), as 'contexts' and 'pnn' do.

The snapshot takes ``input`` and, optionally, ``context`` (int64 scalar, 0 .. K-1, the index into the metadata's
``contexts`` list of serials); left out, it is the learner's context when the snapshot was taken. Outputs: ``logits``
and ``probabilities`` of the chosen context, ``context_logits`` ``[batch, K, num_classes]`` for every context. The
graph holds K copies of the weights (PackNet's contexts share them on the device, but a graph input cannot pick a
mask without running every copy anyway).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edge_cl.export.graph import ExportedNetwork, GraphExtras, context_extras


class ContextCopiesNetwork(ExportedNetwork):
    """K networks of one architecture, one per context; ``forward(x)`` is the default one's (the learner's)."""

    def __init__(self, nets: list[nn.Module], default: int, serials: list[int]) -> None:
        super().__init__()
        if len(nets) != len(serials) or not 0 <= default < len(nets):
            raise ValueError(f"{len(nets)} networks, {len(serials)} serials, default index {default}: one network "
                             "per serial and a default among them")
        self.nets = nn.ModuleList(nets)
        self.default = int(default)
        self.serials = list(serials)

    wrapped_key = "nets"

    def _wrapped(self) -> nn.Module:
        return self._modules["nets"][self.__dict__["default"]]  # type: ignore[index]

    def forward(self, x: Tensor) -> Tensor:
        return self.nets[self.default](x)

    def forward_graph(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """The chosen context's logits and every context's ``[B, K, C]``."""
        every = torch.stack([net(x) for net in self.nets], 1)
        return every.index_select(1, context.reshape(1))[:, 0], every

    def graph_extras(self) -> GraphExtras:
        """The ``context`` input (default: the learner's context; the gate checks every index), ``context_logits``."""
        return context_extras(self.serials, self.default)
