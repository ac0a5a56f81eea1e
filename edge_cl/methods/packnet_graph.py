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

import json

import torch
from torch import Tensor, nn

from edge_cl.export.graph import GraphExtras, GraphInput
from edge_cl.methods.contexts_graph import CONTEXT_INPUT, CONTEXT_OUTPUT


class ContextCopiesNetwork(nn.Module):
    """K networks of one architecture, one per context; ``forward(x)`` is the default one's (the learner's)."""

    def __init__(self, nets: list[nn.Module], default: int, serials: list[int]) -> None:
        super().__init__()
        if len(nets) != len(serials) or not 0 <= default < len(nets):
            raise ValueError(f"{len(nets)} networks, {len(serials)} serials, default index {default}: one network "
                             "per serial and a default among them")
        self.nets = nn.ModuleList(nets)
        self.default = int(default)
        self.serials = list(serials)

    def __getattr__(self, name: str) -> object:
        # What the exporter reads off the model it is given (input_dim, input_shape, spec, standardizer) comes from
        # the default network.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("nets", "default") or "nets" not in self._modules:
                raise
            return getattr(self._modules["nets"][self.__dict__["default"]], name)

    def forward(self, x: Tensor) -> Tensor:
        return self.nets[self.default](x)

    def forward_graph(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """The chosen context's logits and every context's ``[B, K, C]``."""
        every = torch.stack([net(x) for net in self.nets], 1)
        return every.index_select(1, context.reshape(1))[:, 0], every

    def graph_extras(self) -> GraphExtras:
        """The ``context`` input (default: the learner's context; the gate checks every index), ``context_logits``."""
        default = torch.tensor(self.default, dtype=torch.int64)
        values = tuple(torch.tensor(i, dtype=torch.int64) for i in range(len(self.nets)))
        meta = {"contexts": json.dumps(self.serials), "context": str(self.default),
                "context_input": CONTEXT_INPUT, "context_output": CONTEXT_OUTPUT}
        return GraphExtras(inputs=(GraphInput(CONTEXT_INPUT, default, values),), outputs=(CONTEXT_OUTPUT,),
                           metadata=meta)
