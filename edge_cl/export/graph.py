"""Graph inputs and outputs a network adds to its snapshot besides ``input`` -> ``logits``, ``probabilities``.

A network that wants more than the plain graph (method 'contexts': every context's head, and which one predicts)
defines two methods beside ``forward``:

- ``graph_extras() -> GraphExtras``: its extra inputs (each with the value used when an inference process does not
  feed it, stored in the graph as the input's initializer, so a plain ``session.run(..., {"input": x})`` predicts as
  ``forward(x)`` does), its extra outputs and metadata;
- ``forward_graph(x, *inputs) -> (logits, *outputs)``: what the graph computes, the inputs in ``GraphExtras.inputs``
  order. ``forward(x)`` must equal ``forward_graph(x, *defaults)[0]``: the learner predicts with it.

Networks without them export exactly as before (``extras_of`` gives None).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

CONTEXT_INPUT = "context"  # the router's choice, an int64 index into the metadata's "contexts" serials
CONTEXT_OUTPUT = "context_logits"  # every context's logits, [batch, K, num_classes]


@dataclass(frozen=True)
class GraphInput:
    """An extra graph input: ``default`` is fed when a caller gives none; the parity gate checks ``values`` too."""

    name: str
    default: Tensor
    values: tuple[Tensor, ...] = ()


@dataclass(frozen=True)
class GraphExtras:
    """What a network adds to its snapshot: inputs, outputs after ``logits`` (batch on axis 0), metadata."""

    inputs: tuple[GraphInput, ...] = ()
    outputs: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


def context_extras(serials: list[int], default: int) -> GraphExtras:
    """What every context method's network adds (contexts, pnn, packnet): the ``context`` input (its default the
    learner's choice, the parity gate checks every index), the ``context_logits`` output and the serials."""
    values = tuple(torch.tensor(i, dtype=torch.int64) for i in range(len(serials)))
    meta = {"contexts": json.dumps(list(serials)), "context": str(int(default)),
            "context_input": CONTEXT_INPUT, "context_output": CONTEXT_OUTPUT}
    return GraphExtras(inputs=(GraphInput(CONTEXT_INPUT, torch.tensor(int(default), dtype=torch.int64), values),),
                       outputs=(CONTEXT_OUTPUT,), metadata=meta)


class ExportedNetwork(nn.Module):
    """A network built for the snapshot around the learner's own: what the exporter reads off a model (input_dim,
    input_shape, spec, standardizer) comes from the submodule ``_wrapped()`` names (by default ``self.net``)."""

    wrapped_key: ClassVar[str] = "net"  # the submodule that must exist before attributes are forwarded

    def _wrapped(self) -> nn.Module:
        return self._modules[self.wrapped_key]  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == self.wrapped_key or self.wrapped_key not in self._modules:
                raise
            return getattr(self._wrapped(), name)


def extras_of(model: nn.Module) -> GraphExtras | None:
    """``model.graph_extras()`` when the network defines it (and ``forward_graph``), else None."""
    get = getattr(model, "graph_extras", None)
    if not callable(get):
        return None
    if not callable(getattr(model, "forward_graph", None)):
        raise TypeError(f"{type(model).__name__} defines graph_extras() but not forward_graph(x, *inputs); a "
                        "network with extra graph inputs needs both (edge_cl.export.graph)")
    extras = get()
    if not isinstance(extras, GraphExtras):
        raise TypeError(f"{type(model).__name__}.graph_extras() returned {type(extras).__name__}, not GraphExtras")
    return extras


def graph_outputs(model: nn.Module, x: Tensor, inputs: tuple[Tensor, ...] | None = None) -> tuple[Tensor, ...]:
    """``(logits, *extra outputs)`` of ``model`` on ``x``: ``forward_graph`` with ``inputs`` (their defaults when
    None) for a network with extras, else ``(model(x),)``."""
    extras = extras_of(model)
    if extras is None:
        return (model(x),)
    args: Any = tuple(i.default for i in extras.inputs) if inputs is None else inputs
    return tuple(model.forward_graph(x, *args))  # type: ignore[operator]
