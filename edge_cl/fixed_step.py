"""The learner's step with fixed shapes and no host synchronisation: captured as a CUDA graph on CUDA.

An eager step on a GPU pays for a few hundred kernel launches and several host synchronisations (the loss,
the hit count, the gradient norm, the reservoir's slots), ten times the arithmetic of a micro-batch step
(issue #11). This step does the same work -- replay draws from the learner's generator, forward, cross-entropy
plus the methods' terms, backward, the gradient clip and the skip of a non-finite step, the importance pull,
the SGD update, the reservoir insert, the counters -- on tensors whose shapes depend only on the micro-batch's
*bucket* (the next power of two of its size), with every decision made on the device. On CUDA it is captured
once per bucket with ``torch.cuda.graph`` and replayed; elsewhere the same step runs as ordinary operations.

Padding: a micro-batch of ``n`` rows runs at ``bucket_of(n)`` rows; the extra rows are zeros with weight 0 in
the cross-entropy, the hit count, the standardiser update and the reservoir, so the update is the same as an
unpadded step's up to the order of floating-point sums (``tests/test_fixed_step.py``: 1e-5 after 300 steps).

Which methods run here is derived from the hooks they override (:func:`host_work`); the hooks run through
``edge_cl.transaction.call`` and a call that fails in one is rolled back as the eager step is (the learner's
snapshot plus :meth:`FixedStep._rollback` for the buffer rows and device counters this step wrote).

Differences from the eager step, all documented in docs/gpu.md:

- A replay draw always takes its full ``size`` rows (with replacement), weighted 0 while the buffer is empty;
  the eager step takes all stored rows while the buffer holds fewer than ``size``.
- A skipped step (non-finite loss or gradients) still consumes its random numbers, and the learner runs its
  next step eagerly (the eager step replaces buffered rows that made a step overflow).
- Importance estimates (EWC, MAS) run after the step, outside the graph, every ``importance_every`` steps, with
  no host synchronisation (``ImportanceMethod.update_deferred``: a non-finite estimate leaves the running mean
  as it is instead of being skipped).
- On CUDA, a ``learn`` call reports the previous call's step (``LearnStats.lag == 1``: its loss, hits, skip,
  batch size) without waiting for its own; the first call after a wait (the first call, a capture, a read of
  the counters) reports none (``batch_size`` 0, loss NaN). ``exact_stats`` makes every call wait and report its
  own step (the daemon always does). The counters are exact whenever they are read (state, accuracy, report).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_cl.buffer import cast_to_field
from edge_cl.methods.base import Method, Segment, Step
from edge_cl.methods.importance import ImportanceMethod
from edge_cl.step_stats import LearnStats
from edge_cl.transaction import call, overrides

if TYPE_CHECKING:
    from edge_cl.learner import OnlineLearner

log = logging.getLogger("edge_cl")

# Step hooks the fixed-shape step cannot run (host work between the forward and the buffer insert): a method that
# overrides one runs the eager step. Every other hook runs on both steps, through the same transaction.
HOST_HOOKS = ("begin_step", "before_forward", "before_update", "before_step", "after_update")
MAX_BUCKET = 4096  # larger micro-batches run the eager step (one capture per bucket up to here)
CHECK_TOLERANCE = 1e-5  # captured steps must match the same steps run uncaptured to this (relative) on first use


def bucket_of(n: int) -> int:
    """The row count a micro-batch of ``n`` rows runs at: the next power of two (1, 2, 4, ...)."""
    if n < 1:
        raise ValueError(f"a micro-batch has at least one row, got {n}")
    return 1 << (n - 1).bit_length()


def unsupported_reason(learner: OnlineLearner) -> str | None:
    """Why ``learner``'s configuration cannot take the fixed-shape step (None: it can)."""
    cfg = learner.config
    if learner.flat_param is None or learner.flat_grad is None:
        return "the parameters are not one contiguous buffer of one dtype"
    if not learner.plain_sgd():
        return f"optimizer {cfg.optimizer!r} with momentum {cfg.momentum}: only plain SGD is captured"
    if cfg.class_balanced:
        return "the class-balanced reservoir decides per sample on the host"
    if cfg.predict == "ncm":
        return "predict='ncm' refreshes class means from the host's view of the buffer"
    for m in learner.methods:
        reason = host_work(m)
        if reason is not None:
            return reason
        if isinstance(m, ImportanceMethod) and (not m.pulls_weights or m.flat_params is None or m.omega_flat is None
                                                or m.anchor_flat is None):
            return f"method {m.name!r} keeps its importance outside one flat buffer"
    for module in learner.model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return f"the model has {type(module).__name__}, whose batch statistics padded rows would change"
    return None


def host_work(method: Method | type[Method]) -> str | None:
    """Why ``method`` cannot run on the fixed-shape step (None: it can); see ``Method.fixed_shape``."""
    if method.fixed_shape is False:
        return f"method {method.name!r} opts out of the fixed-shape step (fixed_shape = False)"
    if method.fixed_shape is None:
        hooks = [h for h in HOST_HOOKS if overrides(method, h)]
        if hooks:
            return f"method {method.name!r} works on the host inside the step ({', '.join(hooks)})"
    return None


class FixedStep:
    """The fixed-shape step of one learner (see the module docstring); ``capture`` records CUDA graphs."""

    def __init__(self, learner: OnlineLearner, capture: bool, exact_stats: bool = False) -> None:
        self.learner = learner
        self.capture = capture
        self.exact_stats = exact_stats or not capture  # uncaptured steps are synchronous anyway
        dev = learner.device
        self.plain = [m for m in learner.methods if not isinstance(m, ImportanceMethod)]
        self.importance = [m for m in learner.methods if isinstance(m, ImportanceMethod)]
        self.draws = [d for m in self.plain for d in call(m, "replay_draws")]
        self.draws.sort(key=lambda d: not d.join_ce)  # rows in the cross-entropy first, as the eager step
        self.capacity = learner.buffer.capacity
        if self.capacity == 0:
            self.draws = []
        self.seen = torch.zeros((), dtype=torch.int64, device=dev)      # reservoir stream count, on the device
        self.n_valid = torch.zeros((), dtype=torch.int64, device=dev)   # rows of this call's micro-batch
        self.enabled = torch.ones((), dtype=torch.bool, device=dev)     # False: warm-up runs change nothing
        self.lr = torch.full((), float(learner.optimizer.param_groups[0]["lr"]), device=dev)
        self._lr_value = float(learner.optimizer.param_groups[0]["lr"])
        self.out = torch.zeros(4, device=dev)  # loss on the new rows, hits, step ok, rows learned
        self.penalties = torch.zeros(len(self.importance), device=dev)  # refreshed outside the graph
        self.probe = torch.zeros(1, device=dev)  # the step's first reservoir uniform: shows the random state moved
        self._inputs: dict[int, tuple[Tensor, Tensor]] = {}
        self._undo: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}  # per row count: (store, slots, old rows)
        self._graphs: dict[int, Any] = {}
        pin = capture and torch.cuda.is_available()
        self._pinned = [torch.zeros(4 + len(self.importance), pin_memory=pin) for _ in range(2)]
        self._events: list[Any] = [None, None]
        self._pending: tuple[int, int, int] | None = None  # (slot, batch, replay) of a step not read yet
        self._flip = 0
        self.calls = 0
        # False runs each micro-batch at its own size (one capture per size). Padded rows are weighted 0 in the
        # cross-entropy, but a method's loss sees them: only methods that declare fixed_shape = True promise that
        # their terms ignore them; a method derived eligible (fixed_shape None) with a loss runs unpadded.
        self.pad = not any(m.fixed_shape is None and overrides(m, "loss") for m in self.plain)
        self.eager_next = False      # set after a skipped step: the next one runs eagerly
        self.fallback: str | None = None  # set once capture failed: every later step is eager
        # Whether a method's code can fail inside a call (then the learner wraps it in its transaction): the
        # uncaptured step runs loss / sample_values each call, a captured one only while recording (a failure there
        # falls back to the eager step); importance work runs after every step, consolidate when the trigger fires.
        methods = learner.methods
        self.post_step = bool(self.importance) or any(overrides(m, "consolidate") for m in methods)
        self.fallible = self.post_step or (not capture and any(
            overrides(m, h) for m in self.plain for h in ("loss", "sample_values")))

    def workspace_bytes(self) -> int:
        """Bytes of the static inputs and counters kept between steps (transient work, not learner state)."""
        kept = [self.seen, self.n_valid, self.enabled, self.lr, self.out, self.penalties, self.probe,
                *(t for p in self._inputs.values() for t in p)]
        return sum(t.numel() * t.element_size() for t in kept)

    # --- the step on the device -----------------------------------------------------------------
    def _core(self, rows: int, rand_rows: int) -> None:
        """One step on the first ``n_valid`` of ``rows`` static input rows; ``rand_rows`` reservoir uniforms are
        drawn whatever ``rows`` is (so a padded and an unpadded step consume the same random numbers)."""
        L = self.learner
        x_in, y_in = self._inputs[rows]
        dev = x_in.device
        valid = torch.arange(rows, device=dev) < self.n_valid
        x = torch.where(valid.unsqueeze(1), x_in, 0.0)
        y = torch.where(valid, y_in, 0)
        vf = valid.to(x.dtype)
        std = L.standardizer
        kept: list[Tensor] = []
        if std is not None:
            kept = [b.clone() for b in std.buffers()]
            std.update_rows(x, valid & torch.isfinite(x).all())
        buf = L.buffer
        size = self.seen.clamp_max(self.capacity)
        has = (size > 0).to(x.dtype)
        segments: list[tuple[Any, dict[str, Tensor]]] = []
        for d in self.draws:
            u = torch.rand(d.size, generator=L.generator, device=dev, dtype=torch.float64)
            idx = torch.minimum((u * size).long(), (size - 1).clamp_min(0))
            fields = {"x": buf.codec.decode(buf.x.index_select(0, idx)), "y": buf.y.index_select(0, idx).long()}
            fields.update({n: v.index_select(0, idx) for n, v in buf.values.items()})
            segments.append((d, fields))
        xs = torch.cat([x, *(f["x"] for _, f in segments)]) if segments else x
        if not L.model.training:
            L.model.train()
        logits = L.model(xs)
        joined = [f["y"] for d, f in segments if d.join_ce]
        n_ce = rows + sum(d.size for d, _ in segments if d.join_ce)
        ce = F.cross_entropy(logits[:n_ce], torch.cat([y, *joined]) if joined else y, reduction="none")
        weights = torch.cat([vf, *(has.expand(d.size) for d, _ in segments if d.join_ce)])
        loss = (ce * weights).sum() / weights.sum().clamp_min(1.0)
        step = Step(index=L.counters.step, x=x, y=y, logits=logits[:rows])
        row = rows
        for d, f in segments:
            step.draws[d.key] = Segment(fields=f, logits=logits[row:row + d.size])
            row += d.size
        total = loss
        for m in self.plain:
            term = call(m, "loss", step)
            if term is not None:
                total = total + term * has  # a draw from an empty buffer holds zeros: its term must not count
        # Taken before the weights move, as the eager step does: a method failing here leaves nothing to undo.
        stored = ({n: v for m in self.plain for n, v in call(m, "sample_values", step).items()}
                  if self.capacity else {})
        flat, grad = L.flat_param, L.flat_grad
        assert flat is not None and grad is not None
        grad.zero_()
        total.backward()
        with torch.no_grad():
            squared = torch.dot(grad, grad)
            ok = self.enabled & torch.isfinite(total) & torch.isfinite(squared)
            okf = ok.to(grad.dtype)
            limit = L.config.max_grad_norm
            coef = -self.lr
            if limit is not None:
                norm = squared.sqrt()
                coef = coef * torch.where(norm > limit, limit / norm, 1.0)
            for m in self.importance:
                m.pull_weights_(okf)  # flat buffers: unsupported_reason checked them
            flat.add_(torch.where(ok, grad * coef, 0.0))
            if std is not None:
                for b, old in zip(std.buffers(), kept, strict=True):
                    b.copy_(torch.where(ok, b, old))
            learned = valid & ok
            if self.capacity:
                self._insert(x, y, stored, learned, rand_rows)
            self.seen.add_(learned.sum())
            hits = ((logits[:rows].argmax(1) == y) & valid).sum()
            n = self.n_valid.clamp_min(1).to(ce.dtype)
            self.out.copy_(torch.stack([(ce[:rows] * vf).sum() / n, hits.to(ce.dtype), okf, learned.sum().to(ce.dtype)]))

    def _insert(self, x: Tensor, y: Tensor, stored: dict[str, Tensor], learned: Tensor, rand_rows: int) -> None:
        """Algorithm R for the ``learned`` rows, as the eager buffer does it, with every decision on the device.

        Row i is the n-th sample of the stream (n = seen + its rank among learned rows); it takes slot n - 1 while
        the buffer fills, then slot floor(u n) if that is below capacity, and a later row wins a shared slot. Each
        row writes one slot, and all rows writing one slot write the same value (the winner's, or the value there),
        so the scattered write has one result whatever order the device runs it in."""
        buf, cap = self.learner.buffer, self.capacity
        rows = x.shape[0]
        u = torch.rand(rand_rows, generator=self.learner.generator, device=x.device, dtype=torch.float64)[:rows]
        self.probe.copy_(u[:1])
        n = self.seen + learned.long().cumsum(0)
        slot = torch.where(n <= cap, n - 1, (u * n.double()).long())
        candidate = learned & (slot < cap)
        same = (slot.unsqueeze(1) == slot.unsqueeze(0)) & candidate.unsqueeze(0)
        later = torch.ones(rows, rows, dtype=torch.bool, device=x.device).triu(1)
        keep = candidate & ~(same & later).any(1)
        target = slot.clamp(0, cap - 1)
        writer = (target.unsqueeze(1) == target.unsqueeze(0)) & keep.unsqueeze(0)
        written = writer.any(1)
        source = writer.to(torch.uint8).argmax(1)
        undo = []
        for store, new in [(buf.x, buf.codec.encode(x)), (buf.y, y.to(buf.y.dtype)),
                           *((buf.values[k], cast_to_field(v.detach(), buf.values[k].dtype)) for k, v in stored.items())]:
            shape = (-1,) + (1,) * (new.ndim - 1)
            old = store.index_select(0, target)
            value = torch.where(written.view(shape), new.index_select(0, source), old)
            store.index_copy_(0, target, value)
            undo.append((store, target, old))
        # What the rows held before (graph outputs when captured, rewritten by each replay): a failure later in the
        # same call puts them back (see _rollback).
        self._undo[rows] = undo

    # --- running it -----------------------------------------------------------------------------
    def learn(self, x: Tensor, y: Tensor, started: float) -> LearnStats | None:
        """Run the step on ``x`` / ``y`` (validated, on the device); None when this call must run eagerly."""
        n = int(x.shape[0])
        bucket = bucket_of(n)
        if self.fallback is not None or self.eager_next or bucket > MAX_BUCKET:
            self.sync()
            self.eager_next = False
            return None
        rows = bucket if self.pad else n
        L = self.learner
        if self._pending is None:  # an eager step, a load or the first call may have moved the host's view
            self.seen.fill_(L.buffer.seen)
        lr = float(L.optimizer.param_groups[0]["lr"])
        if lr != self._lr_value:
            self.lr.fill_(lr)
            self._lr_value = lr
        if rows not in self._inputs:
            self._inputs[rows] = (torch.zeros((rows, L.input_dim), device=L.device),
                                  torch.zeros((rows,), dtype=torch.int64, device=L.device))
        if not self.fallible:
            return self._run(x, y, n, rows, bucket, started)
        kept = (self.seen.clone(), self.penalties.clone(), self.calls, self._pending, self._flip)
        try:
            return self._run(x, y, n, rows, bucket, started)
        except Exception:
            self._rollback(rows, kept)
            raise

    def _rollback(self, rows: int, kept: tuple[Tensor, Tensor, int, Any, int]) -> None:
        """Undo what a failed call did here (the learner's transaction puts back the rest): the buffer rows its step
        wrote, the device counters, and a lagged step it had taken over for reading."""
        seen, penalties, self.calls, self._pending, self._flip = kept
        self.seen.copy_(seen)
        self.penalties.copy_(penalties)
        for store, slots, old in reversed(self._undo.get(rows, [])):
            store.index_copy_(0, slots, old)

    def _run(self, x: Tensor, y: Tensor, n: int, rows: int, bucket: int, started: float) -> LearnStats | None:
        L = self.learner
        if not self.capture:
            self._undo.pop(rows, None)  # a failure before this call's insert has no rows to undo
        x_in, y_in = self._inputs[rows]
        x_in[:n].copy_(x)
        y_in[:n].copy_(y)
        self.n_valid.fill_(n)
        if self.capture:
            graph = self._graphs[rows] if rows in self._graphs else self._record(rows, bucket)
            if graph is None:
                return None
            graph.replay()
        else:
            self._core(rows, bucket)
        self.calls += 1
        importance_updated = self._off_graph_work(x, y, n)
        slot = self._flip
        self._flip ^= 1
        self._pinned[slot][:4].copy_(self.out, non_blocking=self.capture)
        self._pinned[slot][4:].copy_(self.penalties, non_blocking=self.capture)
        if self.capture:
            event = torch.cuda.Event()
            event.record()
            self._events[slot] = event
        replay = sum(d.size for d in self.draws)
        previous, self._pending = self._pending, (slot, n, replay)
        if self.exact_stats:
            stats = self._read(self._pending, importance_updated=importance_updated)
            self._pending = None
        elif previous is not None:
            stats = self._read(previous, lag=1, importance_updated=importance_updated)
        else:  # nothing has finished yet that was not reported: the first call after a wait reports no step
            stats = _nothing_yet(L.counters.step, sum(m.last_penalty for m in self.importance), importance_updated)
        return dataclasses.replace(stats, seconds=time.perf_counter() - started)

    def _off_graph_work(self, x: Tensor, y: Tensor, n: int) -> bool:
        """Importance estimates and the reported penalty, every ``importance_every`` calls, outside the graph and
        with no host synchronisation (queued behind the step; the penalty is read with the step's values)."""
        updated = False
        for i, m in enumerate(self.importance):
            if self.calls % m.every == 0:
                call(m, "update_deferred", x[:n], y[:n])
                updated = True
            if m.active and m.penalty_due(self.calls):
                self.penalties[i] = call(m, "penalty_value")
        return updated

    def _read(self, pending: tuple[int, int, int], lag: int = 0, importance_updated: bool = False) -> LearnStats:
        """Fold a finished step's device values into the learner's counters (waiting for it if needed)."""
        slot, batch, replay = pending
        event = self._events[slot]
        if event is not None:
            event.synchronize()
            self._events[slot] = None
        loss, hits, ok, learned, *penalties = self._pinned[slot].tolist()
        L = self.learner
        consolidated = False
        if ok:
            # The counters' own slots: reading L.step would wait for the step still in flight.
            L.counters.learned(int(learned), int(hits))
            L.buffer.seen += int(learned)
            L.buffer.size = min(L.buffer.seen, L.buffer.capacity)
            consolidated = L.trigger is not None and L.trigger.observe(loss)
            if consolidated:
                L.consolidate()  # the penalty is refreshed with the next step's work
        else:
            L.counters.skipped_steps += 1
            self.eager_next = True
        for m, value in zip(self.importance, penalties, strict=True):
            m.last_penalty = value
        penalty = sum(penalties)
        return LearnStats(L.counters.step, loss, int(hits) if ok else 0, batch, replay, not ok, consolidated, penalty,
                          importance_updated, 0.0, lag)

    def sync(self) -> None:
        """Wait for the step in flight, if any, and fold it into the learner's counters."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._read(pending)

    # --- capture --------------------------------------------------------------------------------
    def _record(self, rows: int, bucket: int) -> Any:
        """Capture the step for ``rows`` rows as a CUDA graph, check it against the same step run uncaptured, and
        return it; on any failure fall back to the eager step for good (logged once).

        Warm-up, capture and check all run *disabled* (``enabled`` False: the step computes its loss, hits and
        gradients but changes no state), so nothing needs copying aside but the random state, whatever the
        buffer's size. The check runs two steps each way and compares losses, hits, gradients and the first
        reservoir uniform: two, so that a replay that did not advance the random state would show."""
        L = self.learner
        grad = L.flat_grad
        assert grad is not None
        random_state: Tensor | None = None
        try:
            self.sync()
            random_state = L.generator.get_state()
            self.enabled.fill_(False)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # cuBLAS handles, autograd's lazy set-up: outside the capture
                for _ in range(2):
                    self._core(rows, bucket)
            torch.cuda.current_stream().wait_stream(side)
            L.generator.set_state(random_state)
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(L.generator)
            with torch.cuda.graph(graph):
                self._core(rows, bucket)
            graph_undo = self._undo[rows] if self.capacity else []  # the graph's own tensors, kept by replays
            expected = []
            for _ in range(2):
                self._core(rows, bucket)
                expected.append(torch.cat([self.out, self.probe, grad]))
            L.generator.set_state(random_state)
            got = []
            for _ in range(2):
                graph.replay()
                got.append(torch.cat([self.out, self.probe, grad]))
            worst = max(_relative_gap(e, g) for e, g in zip(expected, got, strict=True))
            if not worst <= CHECK_TOLERANCE:
                raise RuntimeError(f"the captured step differs from the uncaptured one by {worst:.3g} (relative)")
        except Exception as exc:  # noqa: BLE001 - any capture failure must leave a working (eager) learner
            self.fallback = f"{type(exc).__name__}: {exc}"
            log.warning("edge_cl: the CUDA-graph step is off for this learner (%s); learning continues with the "
                        "eager step", self.fallback)
            return None
        finally:
            if random_state is not None:
                L.generator.set_state(random_state)
            self.enabled.fill_(True)
        self._graphs[rows] = graph
        self._undo[rows] = graph_undo
        return graph


def _nothing_yet(step: int, penalty: float, importance_updated: bool) -> LearnStats:
    """The stats of a call on the lagged path with no earlier step left to report: no rows, loss NaN."""
    return LearnStats(step, math.nan, 0, 0, 0, False, False, penalty, importance_updated, 0.0, 1)


def _relative_gap(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max(1, max |a|), over float copies (0 for empty tensors)."""
    if a.numel() == 0:
        return 0.0
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1.0))
