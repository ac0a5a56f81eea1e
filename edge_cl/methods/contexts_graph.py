"""The network method 'contexts' exports: every context's head stacked over the shared trunk, and the router's
choice as a graph input whose default is the context the learner predicts with (edge_cl.export.graph).

The snapshot takes ``input`` and, optionally, ``context`` (int64 scalar, 0 .. K-1, the index into the metadata's
``contexts`` list of serials); left out, it is the learner's choice when the snapshot was taken, so a plain inference
process predicts exactly as the learner does. Outputs: ``logits`` and ``probabilities`` of the chosen context, and
``context_logits`` ``[batch, K, num_classes]``, every context's logits (for a process that routes by itself).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_cl.export.graph import CONTEXT_INPUT, CONTEXT_OUTPUT, ExportedNetwork, GraphExtras, context_extras

__all__ = ["CONTEXT_INPUT", "CONTEXT_OUTPUT", "ContextsNetwork", "RoutedHead"]


class RoutedHead(nn.Module):
    """The output heads of K contexts, ``weight`` ``[K, C, F]`` and ``bias`` ``[K, C]``; predicts with ``choice``."""

    def __init__(self, weight: Tensor, bias: Tensor | None, default: int) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("default", torch.tensor(default, dtype=torch.int64))
        # Set by ContextsNetwork around one forward (the trunk's call reaches this module in between): tracing
        # records whatever tensors flow, so the chosen index becomes a graph input this way.
        self.choice: Tensor | None = None
        self.every: Tensor | None = None
        self.want_every = False

    def forward(self, feats: Tensor) -> Tensor:
        index = (self.default if self.choice is None else self.choice).reshape(1)
        # F.linear with the chosen slice: bit for bit what the learner's nn.Linear computes with that head.
        w = self.weight.index_select(0, index)[0]
        b = None if self.bias is None else self.bias.index_select(0, index)[0]
        if self.want_every:
            every = torch.einsum("bf,kcf->bkc", feats, self.weight)
            self.every = every if self.bias is None else every + self.bias
        return F.linear(feats, w, b)


class ContextsNetwork(ExportedNetwork):
    """A copy of the model whose output head is a :class:`RoutedHead`; ``forward(x)`` predicts as the learner."""

    def __init__(self, model: nn.Module, head: nn.Linear, weight: Tensor, bias: Tensor | None, default: int,
                 serials: list[int]) -> None:
        super().__init__()
        name = next((n for n, m in model.named_modules() if m is head), None)
        if not name:
            raise ValueError("the context head is not a submodule of the model to export")
        self.net = copy.deepcopy(model)
        parent = self.net.get_submodule(name.rpartition(".")[0]) if "." in name else self.net
        self.head = RoutedHead(weight, bias, default)
        setattr(parent, name.rpartition(".")[2], self.head)
        self.serials = list(serials)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def forward_graph(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """The chosen context's logits and every context's ``[B, K, C]``."""
        self.head.choice, self.head.want_every = context, True
        try:
            logits = self.net(x)
            every = self.head.every
        finally:
            self.head.choice, self.head.every, self.head.want_every = None, None, False
        assert every is not None  # the head ran in self.net(x): ContextsNetwork put it there
        return logits, every

    def graph_extras(self) -> GraphExtras:
        """The ``context`` input (default: the learner's choice; the gate checks every index), ``context_logits``."""
        return context_extras(self.serials, int(self.head.default))
