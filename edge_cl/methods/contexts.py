"""Task-free contexts: one output head per context over a shared trunk, opened on a confirmed change and
re-activated when the concept it learned comes back (issue #23; context-dependent processing without task ids).
This is the issue's ``multihead`` method (a shared trunk, a head per context, picked by the router): ``multihead`` is
registered as another name of it, so ``method = "der++ + multihead"`` means ``der++ + contexts``.

The model's last ``nn.Linear`` (the one whose output is the model's logits) is the *active* context's head; the
heads of the other contexts are kept in this method's tensors, frozen while inactive. Each step:

- every buffered sample carries the serial of the context that was active when it arrived (the per-sample field
  ``context``, int16, 2 bytes a sample, counted in the buffer's bytes), and in the step's forward every replayed
  row, whichever method drew it (this method's own cross-entropy draw, ER's, DER++'s), gets the logits of *its own*
  context's head (``before_forward`` hands the rows' contexts to the head's forward hook): a replayed sample of
  context A pulls the shared trunk towards features A's head still reads right, and never pulls the active head of
  context B towards A's labels or logits. So ``der++ + contexts`` (``der++ + multihead``) keeps conflicting regimes.
  ``context_replay='active'`` sends other methods' replay through the active head instead (the behaviour before
  this routing, bit for bit): on a class-incremental stream the predicting head must keep seeing the old classes,
  and there 'own' costs most of the accuracy (BENCHMARKS.md split-mnist-contexts against split-mnist-contexts-active).
  Inactive heads are not trained (no gradient or optimizer bytes for them): only the trunk moves under them.
- each context's loss on the new labelled rows is measured before the update (the trunk's features through each
  head; the active one's is the prequential loss) and kept over the last ``context_window`` steps. **Router**: the
  context with the lowest mean over that window predicts; when it beats the active one by more than
  ``context_margin`` (relative), its head is swapped into the model -- provided it is near the lowest loss it
  reached while active (within ``context_return`` of ln(num_classes): a returning concept, not a head that fits a
  new concept less badly) and the active one is not (hysteresis: two heads that both fit do not alternate). So
  ``predict`` and the ONNX snapshot (the model itself) use the context that explains the most recent labelled
  samples best, as the learner does. With ``context_keep_good`` a context's slot keeps its head from the last step
  on which it explained its data that well: leaving it puts back a head that a not yet detected change has not
  pulled towards the next concept (off by default: it cost more on Elec2 than it gained on conflicting regimes).
- a drift detector from the trigger registry (``context_detector``, ADWIN by default) is fed the prequential error
  of the new rows. When it confirms a rise, a returning concept is tried first: if another context explains the
  window better than the active one (by the same margin), it is re-activated; otherwise a new context opens, its
  head a copy of the active one (it starts where fine-tuning would).

Budget: ``max_contexts`` slots are allocated up front (a head's weight and bias, its loss window and its serial;
:func:`context_bytes`), so they come out of the buffer's bytes before it is sized; :func:`contexts_that_fit` gives
the most slots a budget holds with the replay buffer still at ``replay_batch`` samples. **When every slot is in
use** and a new context must open, the least used context is evicted (fewest samples learned while it was active;
the oldest on a tie; never the active one): its slot takes the new context under a new serial. Buffered samples of
the evicted context keep their old serial, which no head owns any more: they are left out of the replay loss (weight
0) until the reservoir replaces them (another method's replay of them goes through the active head). Serials count
modulo 32768 (the int16 field) and skip those still in use.

Export: the router needs labels, so it runs where they are, in the learner; the model always holds the active
context's head, so ``learner.inference_model()`` and ``predict`` are that one network. The ONNX snapshot holds every
context (:meth:`Contexts.export_network`, edge_cl.methods.contexts_graph): the heads stacked ``[K, C, F]`` over the
trunk, and the router's choice as the optional graph input ``context`` (an index into the metadata's ``contexts``, its
default the context active when the snapshot was taken): an inference process that feeds only ``input`` predicts
exactly as the learner did, one that knows the regime better can pick a context, and ``context_logits`` gives every
context's logits. The parity gate checks the default and each index.

Limits: samples learned between a change and its detection are filed under the old context; the optimizer's state
(momentum, Adam) of the head is shared by all contexts (plain SGD, the default, keeps none); the model must compute
its logits with a last ``nn.Linear`` on ``[B, features]`` (checked when the learner is built, the error says how);
the step runs on autograd (a forward hook reads the head's input), not on the fixed-shape or closed-form steps.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from edge_cl.methods.base import Draw, Method, MethodContext, MethodSettings, SampleField, Step
from edge_cl.methods.loss_router import NO_SERIAL, LossRouter
from edge_cl.methods.registry import register, register_alias
from edge_cl.triggers import make_trigger

FIELD = "context"
MAX_SLOTS = 64
# ADWIN checks every step (river's clock 32 delays a detection by up to 31 steps) and is far more eager than river's
# delta 0.002, which missed a label shift that fine-tuning absorbed within 10 steps: a false alarm costs a context
# slot, a missed change pollutes a context. These, context_window and context_beta were chosen on validation seeds
# 100-101 of the conflicting-regimes stream (BENCHMARKS.md conflicting-regimes-contexts-validation).
ADWIN_DEFAULTS = {"clock": 1, "delta": 0.5}


def change_detector(prefix: str, name: str, params: dict[str, Any], method: str, purpose: str
                    ) -> tuple[Any, tuple[str, dict[str, Any]]]:
    """The drift detector a task-free method opens its contexts with (``<prefix>_detector`` and its params; ADWIN's
    defaults above when none are given), and the (name, params) that build it again; errors name the settings."""
    params = dict(params) or (dict(ADWIN_DEFAULTS) if name == "adwin" else {})
    try:
        detector = make_trigger(name, **params)
    except ValueError as exc:
        raise ValueError(f"{prefix}_detector={name!r} with {prefix}_detector_params={params}: {exc}") from None
    if detector is None:
        raise ValueError(f"{prefix}_detector='none': method '{method}' needs a detector to {purpose}; use 'adwin' or "
                         "'page-hinkley'")
    return detector, (name, params)


class ContextsSettings(MethodSettings):
    """Settings of the task-free contexts method."""

    max_contexts: int = Field(4, ge=1, le=MAX_SLOTS, description="Context slots held in the budget (a head, its loss "
                              "window and serial each; edge_cl.methods.contexts.contexts_that_fit gives the most a "
                              "budget holds). When all are in use, a new context evicts the least used one.")
    context_window: int = Field(1, ge=1, le=1000, description="Steps over which each context's loss on the new "
                                "labelled rows is averaged for routing (a returning concept is recognised within "
                                "about half of it).")
    context_margin: float = Field(0.2, ge=0, lt=1, description="Relative margin by which another context's "
                                  "windowed loss must beat the active one's for the router to switch to it.")
    context_detector: str = Field("adwin", description="Drift detector from the trigger registry fed the "
                                  "prequential error of the new rows; its confirmed rise opens (or re-activates) a "
                                  "context. 'adwin' or 'page-hinkley' (river), or any registered trigger.")
    context_detector_params: dict[str, int | float | str] = Field({}, description="Settings of the detector (e.g. "
                                                                  "{delta = 0.002} for adwin); empty: river's "
                                                                  "defaults, except adwin's clock 1 and delta 0.5 "
                                                                  "(checked every step, eager; chosen on validation "
                                                                  "seeds).")
    context_return: float = Field(0.25, ge=0, description="A context is re-activated only while its windowed loss is "
                                  "within this many ln(num_classes) (the loss of a uniform guess) of the lowest it "
                                  "reached while active: a head that merely fits a new concept less badly than the "
                                  "active one is not taken for a returning concept.")
    context_keep_good: bool = Field(False, description="The active context's slot keeps its head from the last step "
                                    "on which it explained the new rows within context_return of its lowest loss; "
                                    "leaving the context puts that head back, not one a change has already pulled "
                                    "towards the next concept (False, the default: the head as it is when the "
                                    "context is left; on Elec2's validation seed the kept head cost more than it gained "
                                    "on conflicting regimes: BENCHMARKS.md conflicting-regimes-contexts-validation).")
    context_beta: float = Field(0.75, ge=0, description="Weight of the replay cross-entropy, each replayed sample "
                                "through its own context's head.")
    context_replay: Literal["own", "active"] = Field(
        "own", description="Which head another method's replayed rows (ER's, DER++'s) go through: 'own', their own "
                           "context's (labels that conflict between regimes: a sample of context A never pulls B's "
                           "head towards A's labels); 'active', the head that predicts now, as if there were one "
                           "head (streams whose old samples do not conflict, e.g. class-incremental: old classes "
                           "keep being taught to the predicting head). This method's own replay is always 'own'.")


class _Route:
    """Which replayed rows of the coming forward go through which context's head (set by ``before_forward``)."""

    def __init__(self, batch: int, draws: list[tuple[Tensor, Tensor | None]], heads_w: Tensor,
                 heads_b: Tensor) -> None:
        self.batch = batch          # new rows first: never routed (they belong to the active context)
        self.draws = draws          # per replay draw, in batch order: (slot of each row, rows to route; None: none)
        self.heads_w, self.heads_b = heads_w, heads_b


class _Capture:
    """What the forward hook shares with the step: the head's input (only while a step asked for it), and the
    routing of the replayed rows for the step's one forward."""

    def __init__(self) -> None:
        self.on = False
        self.feats: Tensor | None = None
        self.route: _Route | None = None


def _routed(route: _Route, feats: Tensor, output: Tensor) -> Tensor:
    """``output`` with every replayed row of an inactive held context computed by that context's head."""
    parts, row = [output[:route.batch]], route.batch
    for slot, mask in route.draws:
        end = row + slot.shape[0]
        if mask is None:
            parts.append(output[row:end])
        else:
            own = torch.einsum("rh,rch->rc", feats[row:end], route.heads_w[slot]) + route.heads_b[slot]
            parts.append(torch.where(mask[:, None], own, output[row:end]))
        row = end
    if row != output.shape[0]:
        raise RuntimeError(f"the step's forward has {output.shape[0]} rows, the new and replayed rows are {row}")
    return torch.cat(parts)


def _hook_for(capture: _Capture) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor | None]:
    # A plain function (not a bound method): deep copies of the model (ONNX export) then share it, never the method.
    def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        if not capture.on:
            return None
        capture.feats = args[0]
        route, capture.route = capture.route, None  # one forward a step
        return None if route is None else _routed(route, args[0], output)
    return hook


def output_head(model: nn.Module, num_classes: int, input_dim: int, device: torch.device) -> nn.Linear:
    """The ``nn.Linear`` whose output is ``model``'s logits (the last one with ``num_classes`` outputs, checked on a
    probe forward); ValueError naming what to change when there is none."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    hint = ("method 'contexts' keeps one output head per context: the model's logits must be the output of its last "
            "nn.Linear layer applied to [B, features] (put any activation or scaling before it)")
    if not heads:
        raise ValueError(f"the model has no nn.Linear with {num_classes} outputs; {hint}")
    head = heads[-1]
    seen: dict[str, Tensor] = {}
    handle = head.register_forward_hook(lambda m, a, o: seen.update(inp=a[0], out=o))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probe = torch.linspace(-1.0, 1.0, 2 * input_dim, device=device).reshape(2, input_dim)
            logits = model(probe)
    finally:
        handle.remove()
        model.train(was_training)
    if "out" not in seen or seen["inp"].ndim != 2 or seen["out"].shape != logits.shape \
            or not torch.equal(seen["out"], logits):
        raise ValueError(f"the model's logits are not the output of its last {num_classes}-output nn.Linear; {hint}")
    return head


def context_bytes(num_classes: int, features: int, window: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes one context slot costs: its head's weight and bias, its loss window (float32) and its serial (int64)."""
    size = torch.empty((), dtype=dtype).element_size()
    return (num_classes * features + num_classes) * size + window * 4 + 8


def contexts_that_fit(model: nn.Module, budget_bytes: int, **options: Any) -> int:
    """The most context slots ``budget_bytes`` holds for ``model`` with the learner ``options`` (method 'contexts'),
    the replay buffer still holding its minimum (``replay_batch`` samples); 0 when not even one fits."""
    from edge_cl.learner import OnlineLearner

    options = {k: v for k, v in options.items() if k not in ("method", "max_contexts")}
    replay = int(options.get("replay_batch", 10))
    one = OnlineLearner.required_bytes(model, buffer_samples=replay, method="contexts", max_contexts=1, **options)
    two = OnlineLearner.required_bytes(model, buffer_samples=replay, method="contexts", max_contexts=2, **options)
    per = two - one
    if budget_bytes < one:
        return 0
    return int(min(MAX_SLOTS, 1 + (budget_bytes - one) // per))


@register
class Contexts(LossRouter, Method):
    """Task-free contexts (alias ``multihead``): a head per context over a shared trunk, replay through each sample's
    own head, a drift detector that opens contexts and a router that re-activates the one explaining the recent
    samples best."""

    name = "contexts"
    Settings: ClassVar[type[MethodSettings]] = ContextsSettings
    uses_buffer = True
    fixed_shape = False  # routing and the detector run on the host after each step

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, ContextsSettings):
            raise TypeError(f"{type(self).__name__} needs ContextsSettings, got {type(settings).__name__}")
        self.k, self.window_steps = int(settings.max_contexts), int(settings.context_window)
        self.margin, self.beta = float(settings.context_margin), float(settings.context_beta)
        self.keep_good = bool(settings.context_keep_good)
        self.route_all = settings.context_replay == "own"
        self.detector, self._detector_args = change_detector(
            "context", settings.context_detector, settings.context_detector_params, "contexts", "open contexts")
        self.tolerance = float(settings.context_return) * math.log(max(ctx.num_classes, 2))
        self.head = output_head(ctx.model, ctx.num_classes, ctx.input_dim, ctx.device)
        w = self.head.weight
        self.heads_w = torch.zeros((self.k, *w.shape), dtype=w.dtype, device=w.device)
        self.heads_b = torch.zeros((self.k, w.shape[0]), dtype=w.dtype, device=w.device)
        self.window = torch.zeros((self.k, self.window_steps), dtype=torch.float32, device=w.device)
        self.serials = torch.full((self.k,), NO_SERIAL, dtype=torch.int64, device=w.device)
        with torch.no_grad():
            self.heads_w[0].copy_(w)
            if self.head.bias is not None:
                self.heads_b[0].copy_(self.head.bias)
        self.serials[0] = 0
        # Host-side bookkeeping (saved in the state): which slot is active, what each slot was used for.
        self.active = 0
        self.serial_of = [0] + [NO_SERIAL] * (self.k - 1)
        self.usage = [0] * self.k          # samples learned while each slot was active
        self.level = [math.inf] * self.k   # the lowest windowed loss each slot reached while active
        self.next_serial = 1
        self.pos, self.filled = 0, 0       # ring position and steps held in the loss windows
        self.counts = {"opened": 1, "reactivated": 0, "routed": 0, "evicted": 0, "detections": 0}
        self._pending: list[float] | None = None  # this step's per-slot losses and error, until after_update
        self._capture = _Capture()
        # Held for this method's lifetime, so the learner steps through the modules (autograd), never the closed-form
        # chain that skips hooks; removed with the method (a throwaway one, e.g. required_bytes', leaves the model bare).
        self._handle = self.head.register_forward_hook(_hook_for(self._capture))
        weakref.finalize(self, self._handle.remove)

    # --- budget -------------------------------------------------------------------------------------
    def tensors(self) -> list[Tensor]:
        return [self.heads_w, self.heads_b, self.window, self.serials]

    def sample_fields(self) -> dict[str, SampleField]:
        return {FIELD: SampleField((), torch.int16)}

    # --- the step -----------------------------------------------------------------------------------
    def replay_draws(self) -> Sequence[Draw]:
        return (Draw(FIELD, self.ctx.replay_batch),)

    def begin_step(self, index: int) -> None:
        self._capture.on, self._capture.feats, self._capture.route = True, None, None

    def before_forward(self, batch: int, replayed: Sequence[tuple[str, dict[str, Tensor]]]) -> None:
        # Every replayed row of a held context other than the active one gets that context's logits from the forward,
        # whichever method drew it (ER's and DER++'s replay too, unless context_replay='active'): its labels and
        # stored logits then pull the trunk, never the active head. Rows of an evicted context (no head) keep the
        # active head's logits.
        if not replayed:
            return
        draws = []
        for key, fields in replayed:
            match = fields[FIELD].long()[:, None] == self.serials[None, :]      # [R, K]
            slot = match.to(torch.int8).argmax(1)
            route = match.any(1) & (slot != self.active)
            draws.append((slot, route if self.route_all or key == FIELD else None))
        self._capture.route = _Route(batch, draws, self.heads_w, self.heads_b)

    def loss(self, step: Step) -> Tensor | None:
        feats, self._capture.on, self._capture.feats = self._capture.feats, False, None
        if feats is None:
            raise RuntimeError("the model's output head did not run in the step's forward")
        b = step.batch
        with torch.no_grad():
            # Every slot's loss on the new rows, before the update: inactive heads on the trunk's features, the
            # active one from the step's own logits (its slot copy is stale while it trains).
            new = feats[:b].detach()
            per_slot = torch.einsum("bh,kch->kbc", new, self.heads_w) + self.heads_b[:, None, :]
            ce = F.cross_entropy(per_slot.reshape(-1, per_slot.shape[-1]), step.y.repeat(self.k),
                                 reduction="none").view(self.k, b).mean(1)
            logits = step.logits.detach()
            ce[self.active] = F.cross_entropy(logits, step.y)
            err = (logits.argmax(1) != step.y).float().mean()
            self._pending = torch.cat([ce, err[None]]).tolist()
        seg = step.draws.get(FIELD)
        if seg is None or len(seg) == 0 or self.beta == 0:
            return None
        # The forward already gave each row its own context's logits (before_forward); rows of an evicted context
        # (a serial no slot holds) are left out.
        known = (seg.fields[FIELD].long()[:, None] == self.serials[None, :]).any(1)
        ce_rows = F.cross_entropy(seg.logits, seg.y, reduction="none") * known
        total = ce_rows.sum() / known.sum().clamp_min(1)
        return total if self.beta == 1.0 else self.beta * total

    def sample_values(self, step: Step) -> dict[str, Tensor]:
        serial = self.serial_of[self.active]
        return {FIELD: torch.full((step.batch,), serial, dtype=torch.int16, device=step.x.device)}

    def after_update(self, step: Step) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        err = pending[-1]
        self._record_losses(pending[:-1], step.batch)
        if self.keep_good and pending[self.active] <= self.level[self.active] + self.tolerance:
            self._store_head(self.active)
        if self.detector.observe(err):
            self.counts["detections"] += 1
            # A fresh detector measures the next change from this context's own level, not from the errors of the
            # change just handled (which read as a rise again while the new context is being learned).
            name, params = self._detector_args
            self.detector = make_trigger(name, **params)  # type: ignore[assignment]
            best = self._better_slot()
            if best is None:
                self._open()
            else:
                self.counts["reactivated"] += 1
                self._switch(best)
            return
        best = self._better_slot()
        if best is not None:
            self.counts["routed"] += 1
            self._switch(best)

    # --- routing ------------------------------------------------------------------------------------
    def _switch(self, slot: int) -> None:
        """Make ``slot`` the active context: the model's head goes back to its slot, ``slot``'s head into the model."""
        if not self.keep_good:
            self._store_head(self.active)
        with torch.no_grad():
            self.head.weight.copy_(self.heads_w[slot])
            if self.head.bias is not None:
                self.head.bias.copy_(self.heads_b[slot])
        self.active = slot

    def _store_head(self, slot: int) -> None:
        """Copy the model's head into ``slot``."""
        with torch.no_grad():
            self.heads_w[slot].copy_(self.head.weight)
            if self.head.bias is not None:
                self.heads_b[slot].copy_(self.head.bias)

    def _open(self) -> None:
        """Open a new context (a copy of the active head) in a free slot, or in the least used one's when all are."""
        where = self._slot_to_open(self.serial_of)
        if where is None:
            return  # one slot: the only context keeps learning (fine-tuning with replay)
        slot, evicted = where
        self.counts["evicted"] += int(evicted)
        serial = self._new_serial()
        if not self.keep_good:
            self._store_head(self.active)
        self._store_head(slot)
        with torch.no_grad():
            self.window[slot].copy_(self.window[self.active])
        self.serial_of[slot], self.usage[slot], self.level[slot] = serial, 0, math.inf
        self.serials[slot] = serial
        self.counts["opened"] += 1
        self.active = slot

    # --- export -------------------------------------------------------------------------------------
    def export_network(self, net: nn.Module) -> nn.Module | None:
        """Every held context's head stacked over a copy of the trunk, the active one the ``context`` input's
        default (edge_cl.methods.contexts_graph); None when another network predicts (a predictor, NCM)."""
        if net is not self.ctx.model:
            return None  # not the network these heads belong to: it is exported as it is
        from edge_cl.methods.contexts_graph import ContextsNetwork

        held = [i for i in range(self.k) if self.serial_of[i] != NO_SERIAL]
        with torch.no_grad():
            # The active slot's copy is stale while it trains: the model's own head is the active context.
            weight = torch.stack([self.head.weight if i == self.active else self.heads_w[i] for i in held])
            bias = None if self.head.bias is None else \
                torch.stack([self.head.bias if i == self.active else self.heads_b[i] for i in held])
        return ContextsNetwork(net, self.head, weight.detach().clone(), None if bias is None else bias.detach().clone(),
                               held.index(self.active), [self.serial_of[i] for i in held])

    # --- reporting and state -------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return {"contexts": len(self.contexts()), "max_contexts": self.k, "active": self.active_serial,
                **self.counts}

    def state_dict(self) -> dict[str, Any]:
        return {"tensors": [t.detach().clone() for t in self.tensors()], "active": self.active,
                "serial_of": list(self.serial_of), "usage": list(self.usage),
                "level": list(self.level), "next_serial": self.next_serial,
                "pos": self.pos, "filled": self.filled, "counts": dict(self.counts),
                "detector": self.detector.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state.get("serial_of", [])) != self.k:
            raise ValueError(f"saved contexts state has {len(state.get('serial_of', []))} slots, this learner "
                             f"max_contexts={self.k}; load with the same max_contexts")
        super().load_state_dict(state)
        self.active = int(state["active"])
        self.serial_of = [int(s) for s in state["serial_of"]]
        self.usage = [int(u) for u in state["usage"]]
        self.level = [float(v) for v in state["level"]]
        self.next_serial, self.pos, self.filled = int(state["next_serial"]), int(state["pos"]), int(state["filled"])
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.detector.load_state_dict(state["detector"])
        self._pending = None


# The name for this method (a shared trunk, a head per context, picked by the router): one method, two names.
register_alias("multihead", Contexts.name)
