"""The method interface: optional hooks around the learner's one training step.

A method says only what it adds; the learner owns the step itself (replay draws, one forward, zero_grad,
backward, the optimizer step, device moves, the non-finite skip, the buffer insert). Order of one step::

    draws = [d for m in methods for d in m.replay_draws()]      # sampled from the buffer
    m.begin_step(index)                                          # e.g. ask to see the forward's activations
    m.before_forward(batch, replayed)                            # the draws' stored fields, in batch order
    logits = model(cat(new, *draws))                            # one forward
    loss = CE(new + draws that join the CE) + sum(m.loss(step))  # extra loss terms
    backward; m.before_update(step)                              # gradient work (penalties, projections)
    gradients non-finite -> skip; norm > max_grad_norm -> scaled down
    values = m.sample_values(step)                               # per-sample fields (e.g. logits)
    m.before_step(step)                                          # direct parameter work (decoupled penalties)
    optimizer.step()
    m.after_update(step)                                         # work after the step (importance, SI)
    trigger fires -> m.consolidate()
    buffer.add(new, **values)                                    # last: nothing after it can fail

Before any of this, a method may hand the learner a network to run instead of the model (:meth:`Method.wrap_model`,
e.g. PNN's columns): the one step above then runs on it.

A step is a transaction (edge_cl.transaction): if any hook raises, the learner's whole state is put back and the
error names the method and the hook.

Every tensor a method keeps must be allocated in ``__init__`` and returned by :meth:`Method.tensors`: the
budget measures them there, before the buffer is sized, and counts them under the method's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn


class MethodSettings(BaseModel):
    """Typed, validated settings of one method; each method subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SampleField:
    """A per-sample value a method stores with each buffered sample (e.g. logits): shape and dtype."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def bytes(self) -> int:
        """Bytes one sample's value costs."""
        n = 1
        for s in self.shape:
            n *= int(s)
        return n * torch.empty((), dtype=self.dtype).element_size()


@dataclass(frozen=True)
class Draw:
    """A replay draw a method asks for: ``size`` buffered samples under ``key``.

    ``join_ce=True`` adds the draw's rows to the learner's cross-entropy (experience replay: one mean over
    new and replayed rows); ``False`` leaves them to the method's own :meth:`Method.loss` terms.
    """

    key: str
    size: int
    join_ce: bool = False


@dataclass
class MethodContext:
    """What a method may know about the learner it is part of."""

    model: nn.Module
    params: list[nn.Parameter]
    device: torch.device
    generator: torch.Generator
    num_classes: int
    input_dim: int
    lr: float
    optimizer: str
    replay_batch: int
    momentum: float = 0.0
    flat_params: Tensor | None = None   # one buffer the parameters are views of, in order (None: they are not)
    chain: bool = False                 # the learner runs the Linear/ReLU chain itself: no module forward hooks
                                        # fire in its step, every step hands over Step.layer_inputs instead

    @property
    def plain_sgd(self) -> bool:
        """SGD without momentum: a step is ``theta -= lr * grad``, so a term's gradient may be applied to the
        weights directly (exactly, and without a parameter-sized temporary) in :meth:`Method.before_step`."""
        return self.optimizer == "sgd" and self.momentum == 0


def flat_zeros_like(tensors: Sequence[Tensor], dtype: torch.dtype | None = None) -> tuple[Tensor, list[Tensor]]:
    """One zero buffer holding every tensor's elements in order, and views of it shaped like each tensor (the
    layout of :attr:`MethodContext.flat_params`); ``dtype`` defaults to the tensors' own."""
    buffer = torch.zeros(sum(t.numel() for t in tensors), dtype=dtype or tensors[0].dtype, device=tensors[0].device)
    views, offset = [], 0
    for t in tensors:
        views.append(buffer[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return buffer, views


@dataclass
class Segment:
    """Rows of one replay draw inside the step's batch: stored fields, and the model's logits on them."""

    fields: dict[str, Tensor]
    logits: Tensor
    start: int = 0                  # first row of the segment in the step's batch (and its logits)

    @property
    def x(self) -> Tensor:
        return self.fields["x"]

    @property
    def y(self) -> Tensor:
        return self.fields["y"]

    def __len__(self) -> int:
        return int(self.fields["y"].shape[0])


@dataclass
class Step:
    """One step as the hooks see it. ``logits`` are the model's on ``x`` (new rows first), with autograd."""

    index: int                      # optimizer steps taken before this one
    x: Tensor                       # new samples [B, D] on the device, float32
    y: Tensor                       # their labels [B]
    logits: Tensor                  # [B, C] on the new samples (a slice of the batch forward)
    draws: dict[str, Segment] = field(default_factory=dict)
    report: dict[str, float] = field(default_factory=dict)   # values hooks publish (e.g. "penalty")
    flags: set[str] = field(default_factory=set)             # events hooks publish (e.g. "importance_updated")
    layer_inputs: list[Tensor] | None = None  # each Linear layer's input, when the learner ran a Linear/ReLU chain
    # With the chain: the parameters' gradients (new tensors, in parameter order) of a loss whose gradient at the
    # logits is given as (first row, rows) pairs -- what autograd.grad would return, for methods that need one.
    param_grads: Callable[[list[tuple[int, Tensor]]], list[Tensor]] | None = None

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])


class Method:
    """A continual-learning method: every hook is optional and does nothing by default.

    Subclasses set ``name`` (the registered name), ``Settings`` (typed settings, documented once) and
    ``uses_buffer`` (True if the method replays, so the learner keeps a buffer for it).
    """

    name: ClassVar[str] = ""
    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    uses_buffer: ClassVar[bool] = False
    # Whether the method runs on the fixed-shape (CUDA-graph) step, edge_cl.fixed_step. None (the default): derived
    # from the hooks it overrides: yes when its step work is ``replay_draws``, ``loss`` and ``sample_values`` (device
    # work on fixed shapes: a draw then always holds its full size, its terms weighted 0 while the buffer is empty)
    # and ``consolidate``; no when it works on the host inside the step (begin_step, before_update, before_step,
    # after_update). A capture that fails or differs from the uncaptured step falls back to the eager step, so a
    # method author need not know. False opts out; importance methods say True (the weight pull is device work and
    # the estimate runs after the step).
    fixed_shape: ClassVar[bool | None] = None

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        self.ctx = ctx
        self.settings = settings

    # --- the network --------------------------------------------------------------------------------
    @classmethod
    def wrap_model(cls, model: nn.Module, settings: MethodSettings, num_classes: int) -> nn.Module | None:
        """A network the learner runs instead of ``model`` (e.g. ``model``'s layers as the first of several
        columns), built before the learner collects the trainable parameters, so that the one step, the budget, the
        state, ``predict`` and the ONNX snapshot all run on it; None (the default): ``model`` as it is.

        It is called on the bare model (before the input standardiser goes in front of it) when the learner is
        built and when :meth:`OnlineLearner.required_bytes` sizes a budget; a model it already returned must come
        back unchanged (a learner loaded with such a model)."""
        return None

    # --- budget -------------------------------------------------------------------------------------
    def tensors(self) -> list[Tensor]:
        """Every tensor this method keeps (counted in the budget under its name)."""
        return []

    def sample_fields(self) -> dict[str, SampleField]:
        """Fields stored with each buffered sample besides x and y (counted per sample)."""
        return {}

    # --- the step -----------------------------------------------------------------------------------
    def replay_draws(self) -> Sequence[Draw]:
        """Replay draws this method needs in the coming step."""
        return ()

    def begin_step(self, index: int) -> None:
        """Called before the step's forward (``index`` = optimizer steps taken so far), after the draws."""

    def before_forward(self, batch: int, replayed: Sequence[tuple[str, dict[str, Tensor]]]) -> None:
        """Right before the step's forward: every replay draw's key and stored fields (any method's, e.g. a per-sample
        context), in the order their rows follow the ``batch`` new rows in the forward's batch (empty draws left out);
        e.g. to route replayed rows by a stored field (method 'contexts')."""

    def loss(self, step: Step) -> Tensor | None:
        """An extra loss term (a scalar with autograd), or None."""
        return None

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        """The gradient of :meth:`loss` at the step's logits, as ``(first row, gradient rows)`` pairs, for the
        learner's step without autograd (``edge_cl.relu_chain``, Linear/ReLU models); runs instead of
        :meth:`loss` there. A method that overrides ``loss`` but not this one keeps the autograd step; one that
        overrides both must give the gradient autograd would, bit for bit (``tests/test_relu_chain.py``)."""
        return []

    def before_update(self, step: Step) -> None:
        """Work on ``param.grad`` between backward and the optimizer step.

        The gradients may be huge or non-finite here, and the learner may still skip the step after this hook
        (overflowing gradients): keep nothing derived from them that a skipped step would have to undo."""

    def before_step(self, step: Step) -> None:
        """Work on the parameters once the step is sure to happen (gradients checked and clipped), right
        before the optimizer step; with :attr:`MethodContext.plain_sgd`, ``theta -= lr * g`` for an extra
        gradient ``g`` here is exactly what adding ``g`` to ``param.grad`` would do."""

    def sample_values(self, step: Step) -> dict[str, Tensor]:
        """Values of :meth:`sample_fields` for the new samples, offered to the buffer with them."""
        return {}

    def after_update(self, step: Step) -> None:
        """Work after the optimizer step (the new samples join the buffer after this hook and the trigger)."""

    def consolidate(self) -> None:
        """The trigger fired: the stream's distribution settled after a change."""

    def observe(self, x: Tensor) -> bool:
        """Unlabeled samples; return True if the method used them."""
        return False

    def predictor(self) -> nn.Module | None:
        """A network that predicts (and is exported) instead of the model, e.g. an EMA copy; None: the model."""
        return None

    def export_network(self, net: nn.Module) -> nn.Module | None:
        """The network a snapshot exports in place of ``net`` (the inference network), predicting as ``net`` does
        and adding graph inputs or outputs of its own (edge_cl.export.graph); a copy: the learner stays as it was.
        None: ``net`` as it is."""
        return None

    # --- reporting and state -------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """Figures for ``memory_report`` (e.g. the seconds spent estimating importance)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors, numbers, strings, lists, dicts)."""
        return {"tensors": [t.detach().clone() for t in self.tensors()]}

    def step_state(self) -> Any:
        """What this method's step hooks (every hook but :meth:`consolidate`) may change, for the learner's
        transaction: kept before each step, put back with :meth:`load_step_state` if the step fails. The default is
        the whole :meth:`state_dict`; a method whose large tensors change only in ``consolidate`` may return less
        (the transaction then keeps the whole state only when the trigger fires)."""
        return self.state_dict()

    def load_step_state(self, state: Any) -> None:
        """Put back a :meth:`step_state`."""
        self.load_state_dict(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("tensors", [])
        mine = self.tensors()
        if len(saved) != len(mine):
            raise ValueError(f"saved {self.name} state has {len(saved)} tensors, this learner's has {len(mine)}")
        with torch.no_grad():
            for dst, src in zip(mine, saved, strict=True):
                if dst.shape != src.shape:
                    raise ValueError(f"saved {self.name} tensor of shape {tuple(src.shape)} does not fit "
                                     f"{tuple(dst.shape)}: load with the same model")
                dst.copy_(src)
