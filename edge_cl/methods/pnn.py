"""Progressive neural networks, task-free (issue #23; Rusu et al. 2016): a new column per context, the old columns
frozen, lateral connections from the old columns' hidden layers into the newer ones.

**How a method changes the forward.** The method contract had no way to add parameters to what the model computes
(the learner collects the model's trainable parameters before it builds the methods), so it gained one optional
hook, :meth:`Method.wrap_model`: a method may hand the learner a network to run *instead of* the model, built before
the parameters are collected. ``pnn`` wraps the model in :class:`Columns`, and everything else (the one training
step, gradients, the optimizer, the budget's "parameters" part, the saved state, ``predict``, the ONNX snapshot) runs
on that network unchanged. The learner still owns the step.

**The columns.** The model's own layers are the *live* column: the trainable parameters, with the lateral weights
into each of its layers above the first (``U_i``, one linear adapter per layer fed by the layer below of every older
column: ``z_i = W_i h_(i-1) + b_i + U_i (a [h_(i-1) of columns 0..c-1])``, ``a`` = ``column_lateral_scale``, the
paper's adapter scale, fixed; ``column_laterals='head'`` keeps only the output layer's). Older columns are frozen copies kept in this
method's tensors (weights, biases, laterals), never written after they are frozen, so they are bit-identical after
a switch and after any further learning: column ``c`` reads only columns ``0..c``. Only the newest column learns;
it is the only one no other column reads.

**Task-free.** As in ``contexts`` (edge_cl.methods.contexts): a drift detector from the triggers registry
(``column_detector``, ADWIN clock 1 / delta 0.5 by default) is fed the prequential error of the new rows. On a
confirmed change, a returning concept is tried first: the column whose loss on the last ``column_window`` steps beats
the active one's by ``column_margin`` (and is within ``column_return`` ln(num_classes) of the lowest it reached while
active) is re-activated; otherwise the newest column is frozen and a new one opens (``column_init='copy'``: the newest
column's weights, its laterals zero, so it starts where fine-tuning would and learns how much to read from the old
columns; ``'random'``: a fresh initialisation, as in the paper). The column is frozen as its last good copy
(``column_keep_good``: kept, at no extra bytes, in the very slot it freezes into, from the last step on which it
explained the new rows about as well as ever), not with the steps of the next concept learned before the detection.
Between detections the same router moves prediction to a column explaining the recent labels better (and then
restarts the detector, whose history was of the column left: it would otherwise confirm that change later and open
a column a frozen one already explains; columns are never given back). While an
old (frozen) column is active nothing learns (its step's gradients are zero: plain SGD moves no weight; with
momentum or Adam the live column coasts on its optimizer state), so a returning concept predicts at the level its
column had when it was frozen. Buffered samples carry the serial of their column (per-sample field ``column``, int16,
counted in the buffer's bytes); ``pnn``'s own replay (``column_beta``) trains the live column only on samples of its
own concept, never on an older concept's contradicting labels.

**Budget.** ``max_columns`` column slots are allocated up front (each a frozen copy of the weights, biases and
laterals: :func:`column_bytes`), plus the live column's laterals and their gradients (sized for ``max_columns - 1``
sources, in the model's parameters), so the columns come out of the buffer's bytes; :func:`columns_that_fit` gives the
most a budget holds. Laterals into every layer (``column_laterals='all'``) cost ``out * in * (max_columns - 1)`` per
layer and slot, quadratic in the number of columns and several times the column itself on wide layers (MLP
6-100-100-3, 4 columns: 1.0 MB against 0.3 MB for ``'head'``, laterals into the output layer only, and 0.1 MB for
DER++ with 500 samples). **When every slot holds a column**, no column opens: a change that no column explains gives the
newest column a new serial and it goes on learning the new concept over the frozen ones (it forgets what it knew;
the frozen ones keep theirs). Frozen columns are never evicted: newer ones read them.

**Supported models**: a chain of ``nn.Linear`` layers with parameter-free elementwise activations between them
(``nn.ReLU``, ``nn.GELU``, ``nn.Tanh``, ``nn.SiLU``, ``nn.LeakyReLU``, ``nn.ELU``), ending in the logits' ``nn.Linear``:
``edge_cl.models.mlp``, or an ``nn.Sequential`` of those. Convolutional models and anything else are refused when the
learner is built, with what to use instead (``contexts`` keeps a head per context over any trunk).

**Combinations**: ``pnn`` replays by itself (its own draw, own-concept rows only). ``er+pnn`` and ``der++ + pnn`` run,
but their replay pulls the live column towards every buffered sample's label or logits, contradicting ones
included: on streams whose concepts conflict that is what PNN's columns are there to avoid, so they are not
recommended there (measured on the validation seeds, ``conflicting-regimes-pnn-validation``: both learn the new regimes
far below pnn alone); with ``column_beta=0`` they are PNN with ordinary replay, for streams whose concepts agree.

**Export**: ``predict`` runs the active column. The ONNX snapshot holds every held column and the router's choice
(edge_cl.methods.pnn_graph): the ``context`` input picks a column, its default is the column active when the snapshot
was taken (the router itself needs labels, which inference does not have), ``context_logits`` gives every column's.

**Task-free use, measured** (BENCHMARKS.md ``conflicting-regimes-pnn``: pnn against contexts, der++ and fine-tuning
at equal bytes -- what pnn needs with a 500-sample buffer --, seeds 0-2, settings chosen on validation seeds 100-101 in
``conflicting-regimes-pnn-validation``; ``benchmarks/pnn_regimes.sh``). On regimes that contradict each other and come
back, PNN serves task-free use well: the highest prequential accuracy of the four, each new regime learned as well as
fine-tuning learns it (the scaled laterals even help the second one), a returning regime's column re-activated after
its first batch. What it gives away: that first batch (10 of the 200 samples a return is scored on go to the column
active before, most of its gap to the end of the previous visit; one seed of three misses the issue's 5 points), a
frozen copy of the whole network per column (a third of the bytes here, far more on wide models, and with laterals
into every layer), and a column for good per confirmed change: on streams that drift without coming back the slots
fill and the newest column is fine-tuning (not measured here: Elec2 and the domain-IL streams).

Limits: the step runs on autograd (not the closed-form or fixed-shape steps); samples learned between a change and
its detection are filed under the old column (its buffered samples, not its frozen copy, with column_keep_good); the
first batch of a returning concept is predicted by the column active before it (the router needs its labels); the
optimizer's state is shared by every column that was ever live (plain SGD, the default, keeps none); each step
copies the live column about three times (the learner's transaction keeps the weights, pnn's keeps the newest slot,
and column_keep_good refreshes it), which a model far larger than a sensor MLP would feel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, SampleField, Step
from edge_cl.methods.contexts import change_detector
from edge_cl.methods.loss_router import NO_SERIAL, LossRouter
from edge_cl.methods.registry import register
from edge_cl.models import SpecModel
from edge_cl.standardizer import Standardized
from edge_cl.triggers import make_trigger

FIELD = "column"
MAX_COLUMNS = 16
ACTIVATIONS = (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.LeakyReLU, nn.ELU)


class PNNSettings(MethodSettings):
    """Settings of task-free progressive networks."""

    max_columns: int = Field(4, ge=1, le=MAX_COLUMNS, description="Column slots held in the budget (frozen copies "
                             "of the weights and laterals; edge_cl.methods.pnn.columns_that_fit gives the most a budget "
                             "holds). When all hold a column, the newest one goes on learning the next concept.")
    column_window: int = Field(1, ge=1, le=1000, description="Steps over which each column's loss on the new labelled "
                               "rows is averaged for routing.")
    column_margin: float = Field(0.2, ge=0, lt=1, description="Relative margin by which another column's windowed "
                                 "loss must beat the active one's for the router to switch to it.")
    column_detector: str = Field("adwin", description="Drift detector from the trigger registry fed the prequential "
                                 "error of the new rows; its confirmed change opens (or re-activates) a column. "
                                 "'adwin' or 'page-hinkley' (river), or any registered trigger.")
    column_detector_params: dict[str, int | float | str] = Field({}, description="Settings of the detector; empty: "
                                                                 "river's defaults, except adwin's clock 1 and delta "
                                                                 "0.5 (as method 'contexts').")
    column_return: float = Field(0.25, ge=0, description="A column is re-activated only while its windowed loss is "
                                 "within this many ln(num_classes) of the lowest it reached while active.")
    column_beta: float = Field(0.5, ge=0, description="Weight of the live column's replay cross-entropy on buffered "
                               "samples of its own concept (0: no replay of pnn's own; 0.5 chosen on validation seeds, "
                               "BENCHMARKS.md conflicting-regimes-pnn-validation).")
    column_keep_good: bool = Field(True, description="The newest column's slot keeps a copy of it from the last step "
                                   "on which it explained the new rows within column_return of its lowest loss; the "
                                   "column is frozen as that copy, not as the steps of the next concept learned before "
                                   "the change was detected made it (no extra bytes: the slot is the one it freezes "
                                   "into).")
    column_laterals: Literal["all", "head"] = Field("head", description="Which layers of a column read the older "
                                                    "columns: 'all' above the first (the paper's; their bytes grow with "
                                                    "width x width x columns) or 'head', only the output layer (the "
                                                    "old columns' last hidden layer into the logits; chosen on "
                                                    "validation seeds: more accurate there, a third of the bytes).")
    column_lateral_scale: float = Field(0.3, gt=0, le=1, description="Factor on the older columns' activations "
                                        "where a lateral reads them (the paper's adapter scale, fixed here): below 1 "
                                        "the laterals learn more slowly than the column's own weights (0.3 chosen on "
                                        "validation seeds; at 1 they cost the new regimes 1-3 points).")
    column_init: Literal["copy", "random"] = Field("copy", description="A new column's weights: 'copy' of the "
                                                   "column it succeeds (starts where fine-tuning would) or 'random' "
                                                   "(PyTorch's default Linear initialisation, as in the paper).")


def chain_of(model: nn.Module, method: str = "pnn",
             instead: str = "Use edge_cl.models.mlp, or method 'contexts' (a head per context over any trunk)"
             ) -> tuple[list[nn.Linear], list[nn.Module]]:
    """The Linear layers of a chain ``model`` (an nn.Sequential of nn.Linear layers with elementwise activations
    between them, edge_cl.models.mlp; a standardising wrapper is looked through) and the activations between them;
    ValueError naming ``method``, what it needs and ``instead`` for any other model."""
    hint = (f"method '{method}' reads a chain of nn.Linear layers with elementwise activations "
            f"({', '.join(a.__name__ for a in ACTIVATIONS)}) between them: edge_cl.models.mlp, or an nn.Sequential of "
            f"those. {instead}")
    net = model.model if isinstance(model, Standardized) else model
    if isinstance(net, SpecModel):
        if len(net.input_shape) != 1:
            raise ValueError(f"the model takes inputs of shape {net.input_shape}, not flat vectors; {hint}")
        net = net.body
    if type(net) is not nn.Sequential:
        raise ValueError(f"the model is a {type(model).__name__}, not a chain {method} can read; {hint}")
    kids = list(net.children())
    for i, kid in enumerate(kids):
        want: tuple[type[nn.Module], ...] = (nn.Linear,) if i % 2 == 0 else ACTIVATIONS
        if type(kid) not in want:
            raise ValueError(f"layer {i} of the model is {type(kid).__name__}, where {method} expects "
                             f"{'nn.Linear' if i % 2 == 0 else 'an activation'}; {hint}")
    if len(kids) % 2 == 0:
        raise ValueError(f"the model ends with {type(kids[-1]).__name__ if kids else 'nothing'}, not the logits' "
                         f"nn.Linear; {hint}")
    return [k for k in kids[::2]], [k for k in kids[1::2]]  # type: ignore[misc]


class Columns(nn.Module):
    """The model's layers as the live column of ``k`` progressive columns; older columns are frozen copies.

    Trainable parameters: the model's own (the live column's weights) and the laterals into its layers above the
    first (``lateral.<i>``: ``[out_i, (k - 1) * in_i]``, sources in column order). ``store`` holds each column
    slot's frozen weights, biases and laterals (the method's tensors, counted under its budget part). ``active`` is
    the column the forward returns, ``newest`` the live one.
    """

    def __init__(self, model: nn.Module, k: int, laterals: str = "all", scale: float = 1.0) -> None:
        super().__init__()
        layers, acts = chain_of(model)
        self.model = model
        self.k, self.laterals, self.scale = int(k), laterals, float(scale)
        self.layers, self.acts = layers, acts
        # The layers that read the older columns: every one above the first ("all", the paper's), or only the output
        # layer ("head": the old columns' last hidden layer into the logits, a fraction of the bytes).
        first = 1 if laterals == "all" else len(layers) - 1
        self.reads = [self.k > 1 and i >= max(first, 1) for i in range(len(layers))]
        ref = layers[0].weight
        self.lateral = nn.ParameterList(
            [nn.Parameter(torch.zeros((lay.out_features, (self.k - 1) * lay.in_features), dtype=ref.dtype,
                                      device=ref.device)) for i, lay in enumerate(layers) if self.reads[i]])
        self.lateral_of = {i: j for j, i in enumerate(i for i in range(len(layers)) if self.reads[i])}
        # Per layer: weight [k, out, in], bias [k, out] (when the layer has one), lateral [k, out, (k-1)*in] (above
        # the first layer): plain tensors, not buffers, so the learner's step transaction does not copy them every
        # step (they change only when a column is frozen; the method puts that back itself).
        self.store: list[Tensor] = []
        for i, lay in enumerate(layers):
            self.store.append(torch.zeros((self.k, *lay.weight.shape), dtype=ref.dtype, device=ref.device))
            if lay.bias is not None:
                self.store.append(torch.zeros((self.k, lay.out_features), dtype=ref.dtype, device=ref.device))
            if self.reads[i]:
                self.store.append(torch.zeros((self.k, *self.lateral[self.lateral_of[i]].shape), dtype=ref.dtype,
                                              device=ref.device))
        self.active, self.newest = 0, 0
        self.capture = False              # the method asks for the forward's input (set for one step's forward)
        self.captured: Tensor | None = None
        # Set only around an export's forward (edge_cl.methods.pnn_graph): the chosen column as a tensor, so that
        # tracing makes it a graph input, and every held column's logits.
        self.route: Tensor | None = None
        self.every: Tensor | None = None
        for attr in ("input_dim", "input_shape", "num_classes", "spec"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Columns:
        # The frozen store is not a buffer; it moves (and converts) with the module all the same (export's CPU copy).
        super()._apply(fn, recurse)
        self.store = [fn(t) for t in self.store]
        return self

    # --- parameters by column -----------------------------------------------------------------------
    def live(self) -> list[Tensor]:
        """The live column's tensors in :attr:`store`'s per-slot order (weights, biases, laterals by layer)."""
        out: list[Tensor] = []
        for i, lay in enumerate(self.layers):
            out.append(lay.weight)
            if lay.bias is not None:
                out.append(lay.bias)
            if self.reads[i]:
                out.append(self.lateral[self.lateral_of[i]])
        return out

    def _column(self, c: int) -> list[tuple[Tensor, Tensor | None, Tensor | None]]:
        """Column ``c``'s (weight, bias, lateral) per layer: the live parameters for the newest, else its frozen copy."""
        tensors = self.live() if c == self.newest else [t[c] for t in self.store]
        out, pos = [], 0
        for i, lay in enumerate(self.layers):
            w = tensors[pos]
            pos += 1
            b = None
            if lay.bias is not None:
                b, pos = tensors[pos], pos + 1
            u = None
            if self.reads[i]:
                u, pos = tensors[pos][:, :c * lay.in_features], pos + 1
            out.append((w, b, u))
        return out

    def freeze(self, c: int) -> None:
        """Copy the live column into slot ``c`` of the store (its frozen copy from now on)."""
        with torch.no_grad():
            for dst, src in zip(self.store, self.live(), strict=True):
                dst[c].copy_(src)

    # --- forward ------------------------------------------------------------------------------------
    def columns_logits(self, x: Tensor, upto: int, heads: Sequence[int]) -> list[Tensor]:
        """Logits of the columns ``heads`` (each <= ``upto``) on ``x``: every column ``0..upto`` runs its hidden
        layers (a column reads the ones before it), only ``heads`` their output layer."""
        cols = [self._column(c) for c in range(upto + 1)]
        hidden = [x] * (upto + 1)
        last = len(self.layers) - 1
        for i in range(last):
            hidden = [self.acts[i](self._layer(cols, hidden, c, i)) for c in range(upto + 1)]
        return [self._layer(cols, hidden, c, last) for c in heads]

    def _layer(self, cols: list[list[tuple[Tensor, Tensor | None, Tensor | None]]], hidden: list[Tensor], c: int,
               i: int) -> Tensor:
        w, b, u = cols[c][i]
        z = F.linear(hidden[c], w, b)
        if u is not None and c > 0:
            old = torch.cat(hidden[:c], 1)
            z = z + F.linear(old if self.scale == 1.0 else old * self.scale, u)
        return z

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        if self.capture:
            self.captured = x
        if self.route is not None:
            # Column c's logits do not depend on the columns after it: each is what the learner computes with c active.
            self.every = torch.stack(self.columns_logits(x, self.newest, range(self.newest + 1)), 1)
            return self.every.index_select(1, self.route.reshape(1))[:, 0]
        logits = self.columns_logits(x, self.active, [self.active])[0]
        if self.active != self.newest and self.training and torch.is_grad_enabled():
            # A frozen column predicts: no trainable parameter is in the graph, but the learner's step takes its
            # backward all the same. A zero term ties the logits to the live column (every gradient exactly 0).
            logits = logits + 0.0 * self.layers[-1].weight.reshape(-1)[0]
        return logits


def column_bytes(model: nn.Module, k: int, laterals: str = "all") -> int:
    """Bytes of the column store for ``k`` slots of ``model`` (a supported chain): each slot's weights, biases and
    laterals from ``k - 1`` sources (into every layer above the first, or only the output layer for ``"head"``). The
    live column's laterals and their gradients come on top (model parameters)."""
    layers, _ = chain_of(model)
    size = layers[0].weight.element_size()
    per = sum(lay.weight.numel() + (lay.out_features if lay.bias is not None else 0) for lay in layers)
    reading = layers[1:] if laterals == "all" else layers[-1:] if len(layers) > 1 else []
    lat = sum(lay.out_features * (k - 1) * lay.in_features for lay in reading)
    return k * (per + lat) * size


def columns_that_fit(model: nn.Module, budget_bytes: int, **options: Any) -> int:
    """The most column slots ``budget_bytes`` holds for ``model`` with the learner ``options`` (method 'pnn', or a
    combination with it), the replay buffer still holding its minimum (``replay_batch`` samples); 0 when not one.
    Laterals grow with the number of sources, so a column costs more the more there are: counted, not assumed."""
    from edge_cl.learner import OnlineLearner

    options = {k: v for k, v in options.items() if k != "max_columns"}
    options.setdefault("method", "pnn")
    replay = int(options.get("replay_batch", 10))
    best = 0
    for k in range(1, MAX_COLUMNS + 1):
        if OnlineLearner.required_bytes(model, buffer_samples=replay, max_columns=k, **options) > budget_bytes:
            break
        best = k
    return best


def _columns_in(model: nn.Module) -> Columns:
    net = getattr(model, "model", None) if not isinstance(model, Columns) else model
    if not isinstance(net, Columns):
        raise TypeError("method 'pnn' runs on the Columns network its wrap_model builds; build the learner with "
                         "OnlineLearner(model, method='pnn', ...), which installs it")
    return net


@register
class PNN(LossRouter, Method):
    """Task-free progressive networks: a frozen column per past context with lateral connections into the live one,
    opened by a drift detector, and a router that re-activates the column explaining the recent labels best."""

    name = "pnn"
    Settings: ClassVar[type[MethodSettings]] = PNNSettings
    uses_buffer = True
    fixed_shape = False  # routing and the detector run on the host after each step

    @classmethod
    def wrap_model(cls, model: nn.Module, settings: MethodSettings, num_classes: int) -> nn.Module | None:
        if not isinstance(settings, PNNSettings):
            raise TypeError(f"{cls.__name__} needs PNNSettings, got {type(settings).__name__}")
        if isinstance(model, Columns):
            mine = (settings.max_columns, settings.column_laterals, settings.column_lateral_scale)
            if (model.k, model.laterals, model.scale) != mine:
                raise ValueError(f"the model already holds pnn columns (max_columns, column_laterals, "
                                 f"column_lateral_scale) = {(model.k, model.laterals, model.scale)}, the settings ask "
                                 f"for {mine}; pass the bare model")
            return model
        return Columns(model, settings.max_columns, settings.column_laterals, settings.column_lateral_scale)

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, PNNSettings):
            raise TypeError(f"{type(self).__name__} needs PNNSettings, got {type(settings).__name__}")
        self.columns = _columns_in(ctx.model)
        self.k, self.window_steps = int(settings.max_columns), int(settings.column_window)
        self.margin, self.beta = float(settings.column_margin), float(settings.column_beta)
        self.init, self.keep_good = settings.column_init, bool(settings.column_keep_good)
        self.detector, self._detector_args = change_detector(
            "column", settings.column_detector, settings.column_detector_params, "pnn", "open columns")
        self.tolerance = float(settings.column_return) * math.log(max(ctx.num_classes, 2))
        self.window = torch.zeros((self.k, self.window_steps), dtype=torch.float32, device=ctx.device)
        # Host-side bookkeeping (saved in the state).
        self.serial_of = [0] + [NO_SERIAL] * (self.k - 1)
        self.usage = [0] * self.k          # samples learned while each column was active
        self.level = [math.inf] * self.k   # the lowest windowed loss each column reached while active
        self.next_serial = 1
        self.pos, self.filled = 0, 0
        self.kept = False  # the newest column's slot holds a good copy of it (column_keep_good)
        self.counts = {"opened": 1, "reactivated": 0, "routed": 0, "reused": 0, "detections": 0}
        self._pending: list[float] | None = None

    # --- budget -------------------------------------------------------------------------------------
    def tensors(self) -> list[Tensor]:
        return [*self.columns.store, self.window]

    def sample_fields(self) -> dict[str, SampleField]:
        return {FIELD: SampleField((), torch.int16)}

    # --- the step -----------------------------------------------------------------------------------
    def replay_draws(self) -> Sequence[Draw]:
        return (Draw(FIELD, self.ctx.replay_batch),) if self.beta > 0 else ()

    def begin_step(self, index: int) -> None:
        self.columns.capture, self.columns.captured = True, None

    def loss(self, step: Step) -> Tensor | None:
        cols = self.columns
        x, cols.capture, cols.captured = cols.captured, False, None
        if x is None:
            raise RuntimeError("the pnn columns did not run in the step's forward")
        b, n = step.batch, cols.newest
        with torch.no_grad():
            # Every column's loss on the new rows, before the update (the active one's from the step's own logits).
            logits = cols.columns_logits(x[:b].detach(), n, range(n + 1))
            stacked = torch.stack(logits)                                       # [n+1, B, C]
            ce = F.cross_entropy(stacked.reshape(-1, stacked.shape[-1]), step.y.repeat(n + 1),
                                 reduction="none").view(n + 1, b).mean(1)
            ce[cols.active] = F.cross_entropy(step.logits.detach(), step.y)
            err = (step.logits.detach().argmax(1) != step.y).float().mean()
            self._pending = torch.cat([ce, err[None]]).tolist()
        seg = step.draws.get(FIELD)
        if seg is None or len(seg) == 0 or cols.active != n:
            return None
        mine = (seg.fields[FIELD].long() == self.serial_of[n]).float()
        rows = F.cross_entropy(seg.logits, seg.y, reduction="none") * mine
        return self.beta * rows.sum() / mine.sum().clamp_min(1)

    def sample_values(self, step: Step) -> dict[str, Tensor]:
        serial = self.serial_of[self.columns.active]
        return {FIELD: torch.full((step.batch,), serial, dtype=torch.int16, device=step.x.device)}

    def after_update(self, step: Step) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        cols = self.columns
        err, losses = pending[-1], pending[:-1]
        self._record_losses(losses, step.batch)  # slots without a column: 0, never read (serial_of says)
        if self.keep_good and cols.active == cols.newest and losses[cols.newest] <= self.level[cols.newest] + self.tolerance:
            cols.freeze(cols.newest)  # the slot it will be frozen into: a copy, overwritten while it stays good
            self.kept = True
        if self.detector.observe(err):
            self.counts["detections"] += 1
            self._fresh_detector()
            best = self._better_slot()
            if best is None:
                self._open()
            else:
                self.counts["reactivated"] += 1
                cols.active = best
            return
        best = self._better_slot()
        if best is not None:
            self.counts["routed"] += 1
            cols.active = best
            # The router handled the change: the detector's history is of the column left, and would confirm that
            # change later and open a column a frozen one already explains (columns are never given back).
            self._fresh_detector()

    def _fresh_detector(self) -> None:
        """A new detector: it measures the next change from the level of the column now active."""
        name, params = self._detector_args
        self.detector = make_trigger(name, **params)  # type: ignore[assignment]

    def _open(self) -> None:
        """Freeze the newest column and open a new one; when every slot holds a column, the newest one takes the new
        concept under a new serial instead."""
        cols = self.columns
        n = cols.newest
        serial = self._new_serial()
        if n + 1 < self.k:
            if not self.kept:
                cols.freeze(n)  # no good copy kept (never explained its data well, or column_keep_good off): as it is
            self.kept = False
            n += 1
            cols.newest = n
            with torch.no_grad():
                for lat in cols.lateral:
                    lat.zero_()
                if self.init == "random":
                    self._reinitialise()
                self.window[n].copy_(self.window[n - 1])  # a copy computes what it copies: its window from there
            self.counts["opened"] += 1
        else:
            self.counts["reused"] += 1
        cols.active = n
        self.serial_of[n], self.usage[n], self.level[n] = serial, 0, math.inf
        self.kept = False

    def _reinitialise(self) -> None:
        """PyTorch's Linear initialisation for the live column, drawn from the learner's generator (reproducible)."""
        for lay in self.columns.layers:
            bound = 1.0 / math.sqrt(lay.in_features)
            w = torch.rand(lay.weight.shape, generator=self.ctx.generator, device=lay.weight.device)
            lay.weight.copy_((w * 2 - 1) * bound)
            if lay.bias is not None:
                b = torch.rand(lay.bias.shape, generator=self.ctx.generator, device=lay.bias.device)
                lay.bias.copy_((b * 2 - 1) * bound)

    def export_network(self, net: nn.Module) -> nn.Module | None:
        """Every held column, the active one the ``context`` input's default (edge_cl.methods.pnn_graph); None when
        another network predicts (a predictor, NCM): it is exported as it is."""
        if net is not self.ctx.model:
            return None
        from edge_cl.methods.pnn_graph import ColumnsNetwork

        return ColumnsNetwork(net, self.serial_of[:self.columns.newest + 1])

    # --- reporting and state -------------------------------------------------------------------------
    @property
    def active(self) -> int:
        """The column that predicts now."""
        return self.columns.active

    @property
    def newest(self) -> int:
        """The live (learning) column."""
        return self.columns.newest

    def report(self) -> dict[str, Any]:
        return {"columns": self.columns.newest + 1, "max_columns": self.k, "active": self.columns.active,
                "column_store_bytes": sum(t.nbytes for t in self.columns.store), **self.counts}

    def _host_state(self) -> dict[str, Any]:
        return {"active": self.columns.active, "newest": self.columns.newest, "serial_of": list(self.serial_of),
                "usage": list(self.usage), "level": list(self.level), "next_serial": self.next_serial,
                "pos": self.pos, "filled": self.filled, "kept": self.kept, "counts": dict(self.counts),
                "detector": self.detector.state_dict()}

    def _load_host_state(self, state: dict[str, Any]) -> None:
        if len(state.get("serial_of", [])) != self.k:
            raise ValueError(f"saved pnn state has {len(state.get('serial_of', []))} column slots, this learner "
                             f"max_columns={self.k}; load with the same max_columns")
        self.columns.active, self.columns.newest = int(state["active"]), int(state["newest"])
        self.serial_of = [int(s) for s in state["serial_of"]]
        self.usage = [int(u) for u in state["usage"]]
        self.level = [float(v) for v in state["level"]]
        self.next_serial, self.pos, self.filled = int(state["next_serial"]), int(state["pos"]), int(state["filled"])
        self.kept = bool(state["kept"])
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        name, params = self._detector_args
        self.detector = make_trigger(name, **params)  # type: ignore[assignment]
        self.detector.load_state_dict(state["detector"])
        self._pending = None
        self.columns.capture, self.columns.captured = False, None

    def state_dict(self) -> dict[str, Any]:
        return {"tensors": [t.detach().clone() for t in self.tensors()], **self._host_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_host_state(state)
        super().load_state_dict(state)

    def step_state(self) -> Any:
        # A step writes the store only in the newest column's slot (its good copy, or its frozen copy when a column
        # opens); the slots after it are all zeros until a column is frozen there. So a step keeps one slot, not all.
        n = self.columns.newest
        return {"window": self.window.clone(), "slot": [t[n].clone() for t in self.columns.store], **self._host_state()}

    def load_step_state(self, state: Any) -> None:
        self._load_host_state(state)
        n = self.columns.newest
        with torch.no_grad():
            self.window.copy_(state["window"])
            for t, kept in zip(self.columns.store, state["slot"], strict=True):
                t[n].copy_(kept)
                t[n + 1:].zero_()
