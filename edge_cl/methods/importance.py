"""Parameter-importance methods (online EWC, MAS ...) with one shared quadratic penalty.

Each method only says how to estimate importance from a batch (``sample_loss`` and ``phi``); keeping a
running estimate, consolidating it into ``omega`` with an anchor ``theta*``, and the penalty
``lambda * sum omega * (theta - theta*)^2`` are written once here.

Normalisation (``importance_normalize``, on by default): every estimate and every consolidated ``omega`` is
divided by its mean over all parameters (``importance_scope="tensor"``: omega over each parameter tensor), so
omega has mean 1 whatever the model, the stream, the logits' magnitude (MAS grows with it) or the number of
consolidations so far. ``lambda`` then means one thing: under SGD with learning rate ``lr`` the penalty pulls an
average parameter back by ``2 lr lambda`` of its displacement from the anchor at every step. Unnormalised, MAS's
omega rose with the logits and online EWC's sum ``gamma F + F_new`` grew with every consolidation, until the
penalty froze the network (see README).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from edge_cl.methods.base import Method, MethodContext, MethodSettings, Step, flat_zeros_like
from edge_cl.methods.eval_mode import evaluating
from edge_cl.relu_chain import output_grads

log = logging.getLogger(__name__)


class ImportanceSettings(MethodSettings):
    """Settings shared by the importance methods; ``importance_lambda``'s default is per method."""

    importance_lambda: float = Field(1.0, ge=0, description="Penalty strength lambda.")
    importance_gamma: float = Field(0.9, ge=0, le=1,
                                    description="Decay of the consolidated importance at each consolidation.")
    importance_every: int = Field(10, ge=1, description="Estimate importance every this many steps ...")
    importance_samples: int = Field(10, ge=1, description="... on at most this many of the new samples.")
    importance_normalize: bool = Field(True, description="Divide each estimate and the consolidated omega by their "
                                                         "mean over all parameters (mean omega = 1), so lambda "
                                                         "means the same across models and streams.")
    importance_scope: Literal["model", "tensor"] = Field(
        "model", description="What the consolidated omega has mean 1 over: the whole model, or each parameter "
                             "tensor (a layer's weight, its bias) on its own, so that no layer's importance -- "
                             "e.g. a first layer fed raw sensor units -- crowds out the others'.")
    state_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Storage of omega and the running estimate (float16 / bfloat16 halve their bytes, "
                               "leaving the buffer more); the anchor stays float32.")


class ImportanceMethod(Method):
    """Online importance: running estimate -> consolidated ``omega`` + anchor, quadratic penalty.

    ``update`` folds a new estimate into ``current`` (a running mean since the last consolidation);
    ``consolidate`` sets ``omega <- gamma * omega + current`` and moves the anchor to the present weights.
    Under plain SGD omega is capped at ``1 / (2 lr lambda)``: beyond it one step on the penalty would
    overshoot the anchor (and beyond twice that, diverge). Adam rescales steps, so it needs no cap.
    """

    Settings: ClassVar[type[MethodSettings]] = ImportanceSettings
    needs_labels: ClassVar[bool] = True
    # Estimate from the learner's own forward of the step (its layer inputs, one extra partial backward) rather
    # than a forward of its own after the step; False for methods that estimate elsewhere (SCP, SI, RWalk).
    estimates_in_step: ClassVar[bool] = True

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        s = settings
        if not isinstance(s, ImportanceSettings):
            raise TypeError(f"{type(self).__name__} needs ImportanceSettings, got {type(s).__name__}")
        self.model = ctx.model
        self.lam = float(s.importance_lambda)
        self.gamma = float(s.importance_gamma)
        self.every = int(s.importance_every)
        self.samples = int(s.importance_samples)
        self.generator = ctx.generator
        self.normalize = bool(s.importance_normalize)
        self.per_tensor = s.importance_scope == "tensor"
        self.dtype = getattr(torch, s.state_dtype)
        self.chunk = 32             # samples per vmap call: bounds the per-sample gradient workspace
        self.max_omega = 1.0 / (2.0 * ctx.lr * self.lam) if ctx.optimizer == "sgd" and self.lam > 0 else None
        self.names = [n for n, p in ctx.model.named_parameters() if p.requires_grad]
        params = dict(ctx.model.named_parameters())
        self.params: list[Tensor] = [params[n] for n in self.names]
        dt = self.dtype
        # With the parameters in one flat buffer, omega and the anchor are laid out the same way, so a pass over
        # all weights (the penalty, its value) is one operation; the lists are views of the flat buffers.
        self.flat_params = ctx.flat_params if _is_flat_view(ctx.flat_params, self.params) else None
        self.omega_flat, self.omega = _zeros_like(self.params, dt, self.flat_params is not None)
        self.current_flat, self.current = _zeros_like(self.params, dt, self.flat_params is not None)
        # The anchor stays float32: the penalty needs theta - theta*, displacements far below float16's
        # resolution of the weights themselves (measured: 10% gradient error), so only omega and the running
        # estimate are compact.
        self.anchor_flat, self.anchor = _zeros_like(self.params, self.params[0].dtype, self.flat_params is not None)
        with torch.no_grad():
            torch._foreach_copy_(self.anchor, self.params)
        self.current_count = 0      # estimates folded into `current` since the last consolidation
        self.consolidations = 0
        self.clamped = 0            # entries of omega held at max_omega by the last consolidation
        self.updates = 0
        self.rejected = 0           # estimates discarded because they were not finite
        self._deferred_rejected: Tensor | None = None  # the same, counted on the device by update_deferred
        self.seconds = 0.0          # wall time spent estimating importance (its reported cost)
        self.last_penalty = 0.0
        self.last_penalty_at = 0    # consolidations when last_penalty was computed: a consolidation refreshes it
        # Under plain SGD the penalty's step is applied to the weights in before_step, exactly what its
        # gradient would do, with no parameter-sized temporary; other optimizers get the gradient.
        self.pulls_weights = ctx.plain_sgd
        self.pull = 2.0 * ctx.lr * self.lam    # under SGD: the fraction of omega * (theta - theta*) one step removes
        self._layers = self._linear_layers() if self.estimates_in_step else []
        self._chain = self._relu_chain()
        self._targets: list[tuple[Tensor, Tensor | None]] | None = None
        # Pulling float32 weights in one flat buffer, omega is kept multiplied by the pull s (so s omega <= 1
        # is the fraction of its displacement a weight loses per step) and the pull is one lerp pass. Only the
        # stored units change: every value read or saved says which scale it is in (``omega_scale``). bfloat16
        # has float32's range, so its omega is kept the same way (widened for the lerp); float16's s omega would
        # fall into its subnormals, so it keeps omega unscaled.
        self.scale = self.pull if (self.pulls_weights and self.pull > 0 and self.dtype in (torch.float32, torch.bfloat16)
                                   and self.flat_params is not None) else 1.0
        self._hooks: list[Any] = []
        self._seen: dict[nn.Module, tuple[Tensor, Tensor] | None] = {}
        self._captured: tuple[int, list[Tensor], list[Tensor]] | None = None  # (step, layer inputs, output grads)
        self._vmap_failed: str | None = None  # why vmap could not take this model's per-sample gradients

    @classmethod
    def standalone(cls, model: nn.Module, *, lam: float, gamma: float = 0.9, samples: int = 10, chunk: int = 32,
                   generator: torch.Generator | None = None, max_omega: float | None = None,
                   **settings: Any) -> ImportanceMethod:
        """The estimator and penalty on ``model`` outside a learner (oracle tests, notebooks); no omega cap
        unless ``max_omega`` is given."""
        if max_omega is not None and not max_omega > 0:
            raise ValueError(f"max_omega must be positive or None, got {max_omega}")
        params = [p for p in model.parameters() if p.requires_grad]
        device = params[0].device
        ctx = MethodContext(model=model, params=params, device=device,
                            generator=generator or torch.Generator(device=device).manual_seed(0), num_classes=0,
                            input_dim=0, lr=1.0, optimizer="adam", replay_batch=0)
        settings.setdefault("importance_normalize", False)  # oracles compare raw Fisher / sensitivity
        made = cls.Settings.model_validate({"importance_lambda": lam, "importance_gamma": gamma,
                                            "importance_samples": samples, **settings})
        method = cls(ctx, made)
        method.chunk, method.max_omega = max(1, int(chunk)), max_omega
        return method

    def tensors(self) -> list[Tensor]:
        return [*self.omega, *self.current, *self.anchor]

    @property
    def active(self) -> bool:
        """True once something has been consolidated, i.e. the penalty can be non-zero."""
        return self.consolidations > 0

    # --- hooks --------------------------------------------------------------------------------------
    def begin_step(self, index: int) -> None:
        self._release_hooks()
        if self._layers and not self.ctx.chain and (index + 1) % self.every == 0:
            # This step estimates importance: keep what its forward feeds each layer (references, no copies).
            self._seen = {}

            def keep(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
                self._seen[module] = None if module in self._seen else (args[0], out)  # used twice: no shortcut

            watched = [*self._layers, *([self._chain] if self._chain is not None else [])]
            self._hooks = [m.register_forward_hook(keep) for m in watched]

    def loss(self, step: Step) -> Tensor | None:
        # An estimating step: hooks were set in begin_step, or the learner's chain hands the layer inputs over.
        if self._hooks or (self.ctx.chain and self._layers and (step.index + 1) % self.every == 0):
            self._release_hooks()
            started = time.perf_counter()
            self._captured = self._capture(step)
            self.seconds += time.perf_counter() - started
        return None

    def logit_grads(self, step: Step) -> list[tuple[int, Tensor]]:
        self.loss(step)  # the in-step capture; the penalty adds no term at the logits
        return []

    def before_update(self, step: Step) -> None:
        if self.active:
            with_value = self.penalty_due(step.index + 1)
            if self.pulls_weights:
                if with_value:
                    self.last_penalty = float(self.penalty_value())
            else:
                value = self.add_penalty_grad_(with_value=with_value)
                if value is not None:
                    self.last_penalty = float(value)
        step.report["penalty"] = step.report.get("penalty", 0.0) + self.last_penalty

    def penalty_due(self, steps: int) -> bool:
        """Whether the reported penalty is refreshed after ``steps`` steps (and, if so, noted as refreshed). The value
        is only reported (LearnStats.penalty), so it is refreshed every VALUE_EVERY estimates and at a
        consolidation, not every step: a pass over every weight, omega and the anchor, a tenth of an estimating
        step's cost."""
        due = steps % (self.every * VALUE_EVERY) == 0 or self.last_penalty_at < self.consolidations
        if due:
            self.last_penalty_at = self.consolidations
        return due

    def before_step(self, step: Step) -> None:
        if self.active and self.pulls_weights:
            self.pull_weights_()

    def after_update(self, step: Step) -> None:
        if (step.index + 1) % self.every == 0:
            captured, self._captured = self._captured, None
            if captured is not None and captured[0] == step.index:
                self._fold_captured(captured[1], captured[2])
            else:
                self.update(step.x, step.y)
            step.flags.add("importance_updated")

    def observe(self, x: Tensor) -> bool:
        if self.needs_labels:
            return False
        self.update(x, None)
        return True

    def report(self) -> dict[str, Any]:
        self._settle_rejected()
        return {"updates": self.updates, "seconds": self.seconds, "consolidations": self.consolidations,
                "clamped": self.clamped, "rejected": self.rejected, "workspace_bytes": self.workspace_bytes()}

    # --- estimation -------------------------------------------------------------------------------
    def sample_loss(self, logits: Tensor, y: Tensor | None) -> Tensor:
        """The per-sample scalar whose parameter gradient defines importance (summed over a batch)."""
        raise NotImplementedError

    def sample_loss_grad(self, logits: Tensor, y: Tensor | None) -> Tensor:
        """Each row's gradient of :meth:`sample_loss` with respect to its logits (autograd; methods may give
        the closed form, it is on the estimate's path)."""
        with torch.enable_grad():
            z = logits.detach().requires_grad_()
            return torch.autograd.grad(self.sample_loss(z, y), z)[0]

    def phi(self, grads: Tensor) -> Tensor:
        """Elementwise map of per-sample gradients summed into importance (square for EWC, abs for MAS).

        It must be multiplicative, phi(a * b) = phi(a) * phi(b), which lets linear layers use the
        outer-product shortcut in :meth:`_estimate_linear`.
        """
        raise NotImplementedError

    def estimate(self, x: Tensor, y: Tensor | None) -> list[Tensor]:
        """Importance of every parameter, averaged over the samples of ``x`` from per-sample gradients."""
        with evaluating(self.model):
            totals = self._estimate_linear(x, y) if self._linear_only() else self._estimate_per_sample(x, y)
        return [t.div_(x.shape[0]) for t in totals]

    def workspace_bytes(self) -> int:
        """Transient bytes one estimate allocates (freed after it): activations or per-sample gradients."""
        if self._linear_only():
            widths = sum(m.in_features + m.out_features for m in self.model.modules() if type(m) is nn.Linear)
            return 2 * self.samples * widths * 4
        return min(self.samples, self.chunk) * sum(p.numel() for p in self.params) * 4

    def _linear_only(self) -> bool:
        with_params = [m for m in self.model.modules() if any(True for _ in m.parameters(recurse=False))]
        return bool(with_params) and all(type(m) is nn.Linear for m in with_params)

    def _linear_layers(self) -> list[nn.Module]:
        """The model's Linear layers when they hold every trained parameter (the outer-product shortcut
        applies), else []."""
        if not self._linear_only():
            return []
        layers: list[nn.Module] = [m for m in self.model.modules() if type(m) is nn.Linear]
        owned = {id(p) for m in layers for p in m.parameters()}
        return layers if all(id(p) in owned for p in self.params) else []

    def _relu_chain(self) -> nn.Sequential | None:
        """The ``nn.Sequential`` of Linear, ReLU, Linear, ..., Linear that holds the Linear layers, if there is
        one: when the step's forward runs it whole, each layer's output gradient follows from the next one's in
        closed form (``edge_cl.relu_chain.output_grads``)."""
        if not self._layers:
            return None
        for seq in self.model.modules():
            if type(seq) is nn.Sequential:
                kids = list(seq.children())
                if [k for k in kids if type(k) is nn.Linear] == self._layers:
                    chain = len(kids) == 2 * len(self._layers) - 1 and all(
                        type(k) is (nn.Linear if i % 2 == 0 else nn.ReLU) for i, k in enumerate(kids))
                    return seq if chain else None
        return None

    def _release_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _capture(self, step: Step) -> tuple[int, list[Tensor], list[Tensor]] | None:
        """Each layer's inputs and per-sample output gradients of ``sample_loss`` on the step's new rows, from
        the step's own forward (one partial backward, graph kept for the learner's); None if the forward did
        not go through every layer exactly once on flat inputs (the estimate then runs after the step)."""
        seen, self._seen = self._seen, {}
        if step.layer_inputs is not None and self._chain is not None and len(step.layer_inputs) == len(self._layers):
            # The learner ran the chain itself (edge_cl.relu_chain) and hands over each layer's input.
            n = step.batch
            dz = self.sample_loss_grad(step.logits.detach(), step.y if self.needs_labels else None)
            inputs = [a[:n] for a in step.layer_inputs]
            return step.index, inputs, output_grads(self._layers, dz, inputs)
        if any(seen.get(m) is None or seen[m][0].ndim != 2 for m in self._layers):  # type: ignore[index]
            return None
        outs = [seen[m][1] for m in self._layers]  # type: ignore[index]
        n = step.batch
        dz = self.sample_loss_grad(step.logits.detach(), step.y if self.needs_labels else None)
        inputs = [seen[m][0].detach()[:n] for m in self._layers]  # type: ignore[index]
        whole = seen.get(self._chain) if self._chain is not None else None
        if whole is not None and whole[1] is outs[-1] and (
                step.logits.data_ptr() == outs[-1].data_ptr() and step.logits.shape[1:] == outs[-1].shape[1:]
                and step.logits.stride() == outs[-1].stride()):
            # The chain ran once, whole, and its output is the logits: no layer's output was used otherwise.
            return step.index, inputs, output_grads(self._layers, dz, inputs)
        with torch.enable_grad():
            try:
                grads = torch.autograd.grad(step.logits, outs, grad_outputs=dz, retain_graph=True, allow_unused=True)
            except RuntimeError:
                return None
        if any(g is None for g in grads):
            return None  # the logits do not come out of these layers
        return step.index, inputs, [g[:n] for g in grads]

    def _estimate_per_sample(self, x: Tensor, y: Tensor | None) -> list[Tensor]:
        """Per-sample gradients vectorised by torch.func where the model allows it, else one backward per sample.

        vmap cannot run every model: nn.GRU has no batching rule (under ``grad`` its decomposition updates a hidden
        state created unbatched in place, "output with shape [1, H] doesn't match the broadcast shape [N, 1, H]"),
        and a user's module may do anything. The first failure is logged and the loop used from then on: it
        gives the same estimate (tested), only slower."""
        if self._vmap_failed is None:
            try:
                return self._estimate_vmap(x, y)
            except RuntimeError as exc:
                self._vmap_failed = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("%s importance: torch.func.vmap cannot take per-sample gradients of %s (%s); estimating "
                            "with one backward per sample instead (same estimate, slower)", self.name,
                            type(self.model).__name__, self._vmap_failed)
        return self._estimate_loop(x, y)

    def _estimate_loop(self, x: Tensor, y: Tensor | None) -> list[Tensor]:
        """Per-sample gradients by plain autograd, one sample at a time: any model autograd can differentiate."""
        totals = [torch.zeros_like(p) for p in self.params]
        with evaluating(self.model), torch.enable_grad():
            for i in range(x.shape[0]):
                loss = self.sample_loss(self.model(x[i:i + 1]), None if y is None else y[i:i + 1])
                grads = torch.autograd.grad(loss, self.params, allow_unused=True)
                for total, g in zip(totals, grads, strict=True):
                    if g is not None:  # a parameter this sample's output does not reach: zero gradient
                        total.add_(self.phi(g))
        return totals

    def _estimate_vmap(self, x: Tensor, y: Tensor | None) -> list[Tensor]:
        params = {n: p.detach() for n, p in zip(self.names, self.params, strict=True)}
        # Eval mode (see edge_cl.methods.eval_mode): BatchNorm reads its running statistics instead of updating them in place,
        # which a grad transform refuses, and Dropout draws nothing, which vmap refuses.
        buffers = dict(self.model.named_buffers())

        def one(p: dict[str, Tensor], xi: Tensor, yi: Tensor | None) -> Tensor:
            logits = functional_call(self.model, (p, buffers), (xi.unsqueeze(0),))
            return self.sample_loss(logits, None if yi is None else yi.unsqueeze(0))

        per_sample = vmap(grad(one), in_dims=(None, 0, None if y is None else 0))
        totals = [torch.zeros_like(p) for p in self.params]
        try:
            with evaluating(self.model):
                # Chunks bound the per-sample gradient workspace to chunk x n_params floats.
                for start in range(0, x.shape[0], self.chunk):
                    grads = per_sample(params, x[start:start + self.chunk],
                                       None if y is None else y[start:start + self.chunk])
                    for total, n in zip(totals, self.names, strict=True):
                        total.add_(self.phi(grads[n]).sum(0))
        finally:
            _refresh_rnn_weights(self.model)  # also when vmap failed half-way through the model
        return totals

    def _estimate_linear(self, x: Tensor, y: Tensor | None) -> list[Tensor]:
        """Exact per-sample importance for networks of Linear layers without materialising per-sample
        gradients: sample i's weight gradient is the outer product g_i a_i^T of the layer's output
        gradient and input, so sum_i phi(g_i a_i^T) = phi(G)^T phi(A), one matmul per layer."""
        inputs: dict[nn.Module, list[Tensor]] = {}
        outputs: dict[nn.Module, list[Tensor]] = {}

        def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            inputs.setdefault(module, []).append(args[0].detach())
            outputs.setdefault(module, []).append(out)

        layers = [m for m in self.model.modules() if type(m) is nn.Linear]
        handles = [m.register_forward_hook(hook) for m in layers]
        try:
            with torch.enable_grad():
                loss = self.sample_loss(self.model(x), y)
        finally:
            for h in handles:
                h.remove()
        if any(len(inputs.get(m, [])) != 1 or inputs[m][0].ndim != 2 for m in layers):
            return self._estimate_per_sample(x, y)  # a layer used twice or on non-flat inputs: no shortcut
        grads_out = torch.autograd.grad(loss, [outputs[m][0] for m in layers])
        return self._linear_totals(layers, [inputs[m][0] for m in layers], list(grads_out))

    def _linear_totals(self, layers: Sequence[nn.Module], inputs: list[Tensor], grads_out: list[Tensor]
                       ) -> list[Tensor]:
        """``sum_i phi(g_i a_i^T)`` per weight (and ``sum_i phi(g_i)`` per bias) from each layer's inputs ``a``
        and output gradients ``g``, in the order of ``self.params``."""
        per_param: dict[int, Tensor] = {}
        for m, a, g in zip(layers, inputs, grads_out, strict=True):
            pg = self.phi(g)
            per_param[id(m.weight)] = pg.T @ self.phi(a)
            if m.bias is not None:
                per_param[id(m.bias)] = pg.sum(0)
        return [per_param[id(p)] for p in self.params]

    def update(self, x: Tensor, y: Tensor | None) -> None:
        """Estimate importance on up to ``samples`` rows of ``x`` and fold it into the running mean."""
        if y is None and self.needs_labels:
            raise ValueError(f"{self.name} importance needs labels; use method 'mas' for unlabeled data")
        if x.shape[0] == 0:
            return
        started = time.perf_counter()
        self._fold(self.estimate(*self._rows(x, y)), started)

    def _rows(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The ``samples`` rows of ``x`` (and ``y``) an estimate uses."""
        idx = self._subset(x.shape[0], x.device)
        if idx is None:
            return x, y
        return x.index_select(0, idx), None if y is None else y.index_select(0, idx)

    def update_deferred(self, x: Tensor, y: Tensor | None) -> None:
        """:meth:`update` with no host synchronisation, for the fixed-shape (CUDA-graph) step's estimate outside its
        graph: the normaliser and the finiteness check stay on the device, and a non-finite estimate folds the
        running mean into itself (the mean is unchanged; it counts as one estimate) instead of being skipped;
        :attr:`rejected` counts it when read."""
        if y is None and self.needs_labels:
            raise ValueError(f"{self.name} importance needs labels; use method 'mas' for unlabeled data")
        if x.shape[0] == 0:
            return
        started = time.perf_counter()
        new = self.estimate(*self._rows(x, y))
        # Every entry is >= 0: the sum is finite exactly when every entry is.
        total = torch.stack([t.sum(dtype=torch.float64) for t in new]).sum()
        finite = torch.isfinite(total)
        if self.normalize:
            count = sum(t.numel() for t in new)
            torch._foreach_mul_(new, torch.where(total > count * MIN_MEAN, count / total, 1.0).to(new[0].dtype))
        new = [torch.where(finite, n, c.to(n.dtype)) for n, c in zip(new, self.current, strict=True)]
        self._deferred_rejected = self._deferred_rejected + (~finite).long() if self._deferred_rejected is not None \
            else (~finite).long()
        self._join_mean(new, started)

    def _settle_rejected(self) -> None:
        """Fold estimates :meth:`update_deferred` rejected on the device into :attr:`rejected` (one host read)."""
        if self._deferred_rejected is not None:
            self.rejected += int(self._deferred_rejected)
            self._deferred_rejected = None

    def _subset(self, n: int, device: torch.device) -> Tensor | None:
        """Which ``samples`` of ``n`` rows an estimate uses (None: all of them)."""
        if n <= self.samples:
            return None
        return torch.randperm(n, generator=self.generator, device=device)[: self.samples]

    def _fold_captured(self, inputs: list[Tensor], grads: list[Tensor]) -> None:
        """Fold the estimate from what :meth:`loss` captured of the step (the same rows an estimate after
        the step would take, at the weights the step's gradient was taken at)."""
        started = time.perf_counter()
        idx = self._subset(inputs[0].shape[0], inputs[0].device)
        if idx is not None:
            inputs = [a.index_select(0, idx) for a in inputs]
            grads = [g.index_select(0, idx) for g in grads]
        n = inputs[0].shape[0]
        if self.current_flat is None:
            self._fold([t.div_(n) for t in self._linear_totals(self._layers, inputs, grads)], started)
            return
        # Every entry of the estimate is >= 0, so its sum -- the normaliser, and finite exactly when every entry
        # is -- comes from row sums of the small factors without forming it: sum(phi(G)^T phi(A)) =
        # sum_i rowsum(phi(G))_i rowsum(phi(A))_i. Each layer's estimate is then folded straight into the
        # running mean by one addmm, with no parameter-sized workspace (a compact running mean: one layer-sized
        # float32 one, stored back saturated).
        pgs, pas = self.phi_all(grads), self.phi_all(inputs)
        # Sum of each layer's weight estimate, plus its bias's (rowsum(phi(G)) . 1): one reduction for all layers.
        rows_g = torch.stack([pg.sum(1) for pg in pgs])
        rows_a = torch.stack([pa.sum(1) for pa in pas])
        total = torch.dot(rows_g.flatten(), rows_a.flatten())
        targets = self._fold_targets()
        with_bias = [i for i, (_, b) in enumerate(targets) if b is not None]
        if with_bias:
            total = total + (rows_g if len(with_bias) == len(pgs) else rows_g[with_bias]).sum()
        total_value = float(total)
        if not math.isfinite(total_value):
            self.rejected += 1
            self.seconds += time.perf_counter() - started
            return
        count = self.current_flat.numel()
        scale = (count / total_value if total_value > count * MIN_MEAN else 1.0) if self.normalize else 1.0 / n
        self.current_count += 1
        weight = 1.0 / self.current_count
        ones = inputs[0].new_ones(n)
        for (w, b), pg, pa in zip(targets, pgs, pas, strict=True):
            slots = [w] if b is None else [w, b]
            wide = self._float32(slots)  # a compact running mean is updated widened, then stored back
            wide[0].addmm_(pg.T, pa, beta=1.0 - weight, alpha=weight * scale)
            if b is not None:
                wide[1].addmv_(pg.T, ones, beta=1.0 - weight, alpha=weight * scale)
            if wide is not slots:
                for dst, src in zip(slots, wide, strict=True):
                    _store_(dst, src)
        self.updates += 1
        self.seconds += time.perf_counter() - started

    def phi_all(self, tensors: list[Tensor]) -> list[Tensor]:
        """:meth:`phi` of each tensor (methods may give one call for the list)."""
        return [self.phi(t) for t in tensors]

    def _fold_targets(self) -> list[tuple[Tensor, Tensor | None]]:
        """Each layer's (weight, bias) slots of the running estimate ``current``."""
        if self._targets is None:
            current = dict(zip((id(p) for p in self.params), self.current, strict=True))
            self._targets = [(current[id(m.weight)], current[id(m.bias)] if m.bias is not None else None)
                             for m in self._layers]
        return self._targets

    def _fold(self, new: list[Tensor], started: float) -> None:
        """Fold one estimate into the running mean (normalised first; a non-finite one is rejected)."""
        if self.normalize:
            _scale_to_mean_one_(new)
        if not bool(torch.isfinite(torch.stack(torch._foreach_norm(new))).all()):
            # Huge inputs overflow the per-sample gradients: folded in, one such estimate would poison omega.
            self.rejected += 1
            self.seconds += time.perf_counter() - started
            return
        self._join_mean(new, started)

    def _join_mean(self, new: list[Tensor], started: float) -> None:
        """``current`` becomes the mean of every estimate since the last consolidation, ``new`` included."""
        self.current_count += 1
        weight = 1.0 / self.current_count
        if self.dtype == torch.float32:
            torch._foreach_lerp_(self.current, new, weight)
        else:
            for c, n in zip(self.current, new, strict=True):
                _store_(c, c.float().lerp_(n, weight))
        self.updates += 1
        self.seconds += time.perf_counter() - started

    def consolidate(self) -> None:
        """Fold the running estimate into ``omega`` and anchor the penalty at the present weights.

        With ``max_omega`` set, omega is capped there: for SGD with learning rate ``lr`` the learner
        passes ``1 / (2 lr lambda)``, beyond which one step on the penalty would overshoot the anchor
        (and beyond twice that, diverge), so the cap keeps the strongest useful pull and stays stable.
        """
        with torch.no_grad():
            # Compact omega is combined in float32 and stored saturated: gamma omega + current, before it is
            # normalised, can pass float16's 65504 (importance concentrated on a few weights), and inf would
            # turn the whole of omega, then the weights, into NaN.
            omega = self._float32(self.omega)
            torch._foreach_mul_(omega, self.gamma)
            torch._foreach_add_(omega, self._float32(self.current), alpha=self.scale)
            if self.normalize:
                for group in ([o] for o in omega) if self.per_tensor else [omega]:
                    _scale_to_mean_one_(group)
                if self.scale != 1.0:
                    torch._foreach_mul_(omega, self.scale)
            if self.max_omega is not None:
                cap = self.max_omega * self.scale
                self.clamped = int(sum(int((o > cap).sum()) for o in omega))
                torch._foreach_clamp_max_(omega, cap)
            if omega is not self.omega:
                for o, wide in zip(self.omega, omega, strict=True):
                    _store_(o, wide)
            for a, p in zip(self.anchor, self.params, strict=True):
                a.copy_(p)
            torch._foreach_zero_(self.current)
        self.current_count = 0
        self.consolidations += 1

    # --- penalty ----------------------------------------------------------------------------------
    def penalty(self) -> Tensor:
        """``lambda * sum omega * (theta - theta*)^2`` as a differentiable scalar."""
        total = self.params[0].new_zeros(())
        for o, a, p in zip(self.omega, self.anchor, self.params, strict=True):
            total = total + (o.to(p.dtype) * (p - a).pow(2)).sum()
        return self.lam / self.scale * total

    @torch.no_grad()
    def penalty_value(self) -> Tensor:
        """The penalty's value ``lambda * sum omega * (theta - theta*)^2`` (a 0-d tensor, no autograd)."""
        flat, omega, anchor = self.flat_params, self.omega_flat, self.anchor_flat
        if flat is not None and omega is not None and anchor is not None:  # one pass over the flat buffers
            return self._value(self._float32([omega]), [flat - anchor])
        return self._value(self._float32(self.omega), torch._foreach_sub(self.params, self.anchor))

    def _float32(self, omegas: list[Tensor]) -> list[Tensor]:
        """Compact state (omega, the running estimate) widened for the arithmetic (one temporary per tensor); float32
        state itself, the same list."""
        return omegas if self.dtype == torch.float32 else [o.float() for o in omegas]

    def _value(self, omegas: Sequence[Tensor], diffs: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        """``lambda * sum omega * diff^2`` (squares ``diffs`` in place)."""
        torch._foreach_mul_(diffs, diffs)
        return torch.stack([torch.dot(o.flatten(), d.flatten()) for o, d in zip(omegas, diffs, strict=True)]).sum() * (
            self.lam / self.scale)

    def pull_weights_(self, ok: Tensor | None = None) -> None:
        """One SGD step on the penalty alone, ``theta -= lr * 2 lambda omega (theta - theta*)``, applied to the
        weights with no temporary: ``lerp(theta, theta*, s omega)`` (``s = 2 lr lambda``, one pass) when omega
        is kept multiplied by ``s``, else ``theta - s omega theta + s omega theta*`` (two passes). Under plain
        SGD, doing it before the optimizer's step on the loss gradient is exactly the step on the sum of both
        gradients; with omega capped at ``1 / s`` it never passes the anchor. ``ok`` (a 0-d 0 / 1 tensor, flat
        buffers only) decides on the device whether the pull happens: the fixed-shape step's skip."""
        flat, omega, anchor = self.flat_params, self.omega_flat, self.anchor_flat
        if ok is not None:
            if flat is None or omega is None or anchor is None:
                raise ValueError("pull_weights_(ok=...) needs the parameters, omega and the anchor in flat buffers")
            omega = omega * ok  # 0 or omega exactly: the pull below is then nothing or the unmasked one, bit for bit
        # The flat buffers do not require grad, so no autograd context is needed (it costs as much as the call).
        if self.scale == self.pull and flat is not None and omega is not None and anchor is not None:
            # omega holds s * omega: theta + s omega (theta* - theta) in one pass (lerp's weight must be float32:
            # widening bfloat16 omega for it is half the time of two mixed-dtype passes)
            flat.lerp_(anchor, omega if omega.dtype == flat.dtype else omega.float())
            return
        pull = self.pull / self.scale
        if flat is not None and omega is not None and anchor is not None:
            flat.addcmul_(omega, flat, value=-pull)
            flat.addcmul_(omega, anchor, value=pull)
            return
        with torch.no_grad():  # the parameters themselves require grad
            torch._foreach_addcmul_(self.params, self.omega, self.params, value=-pull)  # type: ignore[arg-type]
            torch._foreach_addcmul_(self.params, self.omega, self.anchor, value=pull)  # type: ignore[arg-type]

    @torch.no_grad()
    def add_penalty_grad_(self, with_value: bool = True) -> Tensor | None:
        """Add the penalty's gradient ``2 lambda omega (theta - theta*)`` to each ``param.grad``.

        Cheaper than backpropagating :meth:`penalty`. Returns the penalty value (a 0-d tensor), or
        None with ``with_value=False``, which skips that extra work on the hot path.
        """
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise ValueError("add_penalty_grad_ needs every parameter's .grad allocated; run backward first")
        omegas = self._float32(self.omega)
        diffs = torch._foreach_sub(self.params, self.anchor)
        torch._foreach_addcmul_(grads, omegas, diffs, value=2.0 * self.lam / self.scale)  # type: ignore[arg-type]
        return self._value(omegas, diffs) if with_value else None

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._settle_rejected()
        return {"name": self.name, "omega": [t.clone() for t in self.omega], "current": [t.clone() for t in self.current],
                "anchor": [t.clone() for t in self.anchor], "current_count": self.current_count,
                "consolidations": self.consolidations, "clamped": self.clamped, "updates": self.updates,
                "rejected": self.rejected, "seconds": self.seconds, "omega_scale": self.scale,
                "last_penalty": self.last_penalty, "last_penalty_at": self.last_penalty_at}

    # What a step's hooks change besides the step tensors: omega and the anchor change only in consolidate().
    STEP_SCALARS: ClassVar[tuple[str, ...]] = ("current_count", "consolidations", "clamped", "updates", "rejected",
                                               "seconds", "last_penalty", "last_penalty_at")

    def step_tensors(self) -> list[Tensor]:
        """The tensors a step's hooks may change in place: the running estimate (subclasses add their own)."""
        return list(self.current)

    def step_state(self) -> dict[str, Any]:
        # A copy of the running estimate and the counters, not of omega and the anchor: those change only when the
        # trigger fires, and the transaction keeps the whole state_dict then (a third of the copying per step).
        self._settle_rejected()
        return {"tensors": [t.clone() for t in self.step_tensors()],
                "scalars": {k: getattr(self, k) for k in self.STEP_SCALARS}}

    def load_step_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for dst, src in zip(self.step_tensors(), state["tensors"], strict=True):
                dst.copy_(src)
        for key, value in state["scalars"].items():
            setattr(self, key, value)

    def importance_values(self) -> list[Tensor]:
        """The consolidated importance omega in its own units (copies; stored multiplied by ``scale``)."""
        return [o.float() / self.scale for o in self.omega]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"saved importance is {state['name']!r}, this learner uses {self.name!r}")
        for key in ("omega", "current", "anchor"):
            mine = getattr(self, key)
            if len(state[key]) != len(mine):
                raise ValueError(f"saved {self.name} {key} has {len(state[key])} tensors, model has {len(mine)}")
            # Saved in other units (another learning rate or lambda, an older file): omega is rescaled on the way.
            ratio = self.scale / float(state.get("omega_scale", 1.0)) if key == "omega" else 1.0
            with torch.no_grad():
                for dst, src in zip(mine, state[key], strict=True):
                    _store_(dst, src if ratio == 1.0 else src.float() * ratio)
        self.current_count = int(state["current_count"])
        self.consolidations = int(state["consolidations"])
        self.clamped = int(state.get("clamped", 0))
        self.updates = int(state["updates"])
        self.rejected = int(state.get("rejected", 0))
        self.seconds = float(state["seconds"])
        self.last_penalty = float(state.get("last_penalty", 0.0))
        self.last_penalty_at = int(state.get("last_penalty_at", 0))


VALUE_EVERY = 10  # LearnStats.penalty is refreshed every this many importance estimates (and at consolidation)
# Importance whose mean is below this is numerically zero and is not normalised: EWC's gradient on a sample the model
# predicts with float32 certainty squares to subnormals (~1e-40), and scaling those to mean 1 multiplied rounding
# residue by ~1e40, past float32's range (the step raised). Such an estimate is folded as the zero it is.
MIN_MEAN = 1e-30


def _refresh_rnn_weights(model: nn.Module) -> None:
    """After a torch.func transform, point each RNN's cached weight list back at its parameters: functional_call
    swaps the parameters in and out, and nn.LSTM / nn.GRU keep the transform's (dead) wrapper tensors in
    ``_flat_weights`` until their next forward, so anything that walked the model in between (a budget check, a
    deepcopy) met tensors that no longer exist. The same call the RNN's own forward begins with."""
    for m in model.modules():
        if isinstance(m, nn.RNNBase):
            m._update_flat_weights()


def _is_flat_view(flat: Tensor | None, params: list[Tensor]) -> bool:
    """True if ``params`` are, in order, consecutive views covering all of ``flat``."""
    if flat is None or not params:
        return False
    offset = 0
    for p in params:
        if p.untyped_storage().data_ptr() != flat.untyped_storage().data_ptr() or p.storage_offset() != offset:
            return False
        offset += p.numel()
    return offset == flat.numel()


def _zeros_like(params: list[Tensor], dtype: torch.dtype, flat: bool) -> tuple[Tensor | None, list[Tensor]]:
    """Zeros shaped like ``params``: views of one flat buffer (returned first) when ``flat``, else one each."""
    if not flat:
        return None, [torch.zeros_like(p, dtype=dtype, memory_format=torch.contiguous_format) for p in params]
    return flat_zeros_like(params, dtype)


def _store_(dst: Tensor, value: Tensor) -> None:
    """Copy ``value`` into ``dst``, saturating at ``dst``'s largest finite magnitude: a compact float16 omega, estimate
    or path integral overflows at 65504, and one inf entry makes the penalty, then every weight, NaN."""
    if dst.dtype == torch.float16 and value.dtype != torch.float16:
        top = torch.finfo(torch.float16).max
        value = value.clamp(-top, top)
    dst.copy_(value)


def _scale_to_mean_one_(tensors: list[Tensor]) -> None:
    """Divide ``tensors`` in place by their common mean over every element (left as they are if it is below
    :data:`MIN_MEAN`, numerically 0)."""
    total = sum(float(t.float().sum()) for t in tensors)
    count = sum(t.numel() for t in tensors)
    if count and total > count * MIN_MEAN:
        torch._foreach_mul_(tensors, count / total)
