"""How the arithmetic of one learner step is executed: one interface, two engines for the eager step.

The learner's step (edge_cl.learner) decides what happens -- the draws, the hooks in their order, the skip of a
non-finite step, the clip, the optimizer step, the buffer insert; an engine only computes, for the batch the step
assembled, the logits, the per-sample cross-entropy, the methods' extra loss terms and the gradients of their sum:

- :class:`AutogradEngine`: the reference, any model; ``Method.loss`` through autograd.
- :class:`ClosedFormEngine`: Linear/ReLU chains (edge_cl.relu_chain), without the autograd engine: the gradient at
  the logits from the kernels autograd's backward uses, then two matrix products per layer. A method's term
  enters through ``Method.logit_grads`` when the method gives it (bit-identical to autograd, tested), else
  through autograd on that term alone with the logits as a leaf (:func:`derived_grads`, within float rounding).

The fixed-shape, CUDA-graph step (edge_cl.fixed_step) is the third engine; it runs the whole step itself.
A method author writes ``loss`` (and optionally ``logit_grads``), never an engine.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_cl.methods.base import Method, Step
from edge_cl.relu_chain import ReLUChain, per_sample_cross_entropy_grad
from edge_cl.transaction import call


class StepEngine(Protocol):
    """The arithmetic of one eager step; one instance per learner, state kept only within a step."""

    name: str

    def forward(self, xs: Tensor) -> Tensor:
        """The model's logits on the step's batch (new rows, then replayed rows)."""

    def cross_entropy(self, ce_logits: Tensor, ys: Tensor) -> Tensor:
        """Per-sample cross-entropy of the rows that join it."""

    def prepare(self, step: Step, logits: Tensor) -> None:
        """Fill what the engine hands the hooks (e.g. the chain's layer inputs) into ``step``."""

    def terms(self, methods: list[Method], step: Step, logits: Tensor) -> list[Tensor]:
        """The methods' extra loss terms (their values, for the finite check and the report)."""

    def backward(self, losses: Tensor, terms: list[Tensor], ys: Tensor, n_ce: int, logits: Tensor) -> None:
        """Write the gradient of ``mean(losses) + sum(terms)`` into the parameters' gradients."""

    def release(self) -> None:
        """Drop what this step kept (activations are not learner state: they must not outlive the step)."""


class AutogradEngine:
    """The reference engine: one forward through the model's modules, one autograd backward."""

    name = "autograd"

    def __init__(self, model: nn.Module, grads: list[Tensor], flat_grad: Tensor | None) -> None:
        self.model, self.grads, self.flat_grad = model, grads, flat_grad

    def forward(self, xs: Tensor) -> Tensor:
        return self.model(xs)

    def cross_entropy(self, ce_logits: Tensor, ys: Tensor) -> Tensor:
        return F.cross_entropy(ce_logits, ys, reduction="none")

    def prepare(self, step: Step, logits: Tensor) -> None:
        pass

    def terms(self, methods: list[Method], step: Step, logits: Tensor) -> list[Tensor]:
        return [t for t in (call(m, "loss", step) for m in methods) if t is not None]

    def backward(self, losses: Tensor, terms: list[Tensor], ys: Tensor, n_ce: int, logits: Tensor) -> None:
        total = losses.mean()
        for t in terms:
            total = total + t
        if self.flat_grad is not None:  # gradients stay allocated: they are counted in the budget
            self.flat_grad.zero_()
        else:
            torch._foreach_zero_(self.grads)
        total.backward()

    def release(self) -> None:
        pass


class ClosedFormEngine:
    """Linear/ReLU chains without the autograd engine (see the module docstring)."""

    name = "closed-form"

    def __init__(self, chain: ReLUChain, params: list[nn.Parameter], grads: list[Tensor],
                 closed_form: Callable[[Method], bool]) -> None:
        self.chain, self.params, self.grads, self.closed_form = chain, params, grads, closed_form
        self._inputs: list[Tensor] = []
        self._logp: Tensor | None = None
        self._extra: list[tuple[int, Tensor]] = []
        self._direct: list[list[Tensor | None]] = []

    def forward(self, xs: Tensor) -> Tensor:
        logits, self._inputs = self.chain.forward(xs)
        return logits

    def cross_entropy(self, ce_logits: Tensor, ys: Tensor) -> Tensor:
        # The values F.cross_entropy gives, and its log-probabilities for the gradient.
        self._logp = torch.log_softmax(ce_logits, 1)
        return F.nll_loss(self._logp, ys, reduction="none")

    def prepare(self, step: Step, logits: Tensor) -> None:
        step.layer_inputs = self._inputs
        step.param_grads = functools.partial(self._param_grads, list(self._inputs), logits)

    def terms(self, methods: list[Method], step: Step, logits: Tensor) -> list[Tensor]:
        self._extra, self._direct = [], []
        terms: list[Tensor] = []
        for m in methods:
            if self.closed_form(m):
                self._extra += call(m, "logit_grads", step)
                continue
            at_logits, at_params, term = derived_grads(m, step, logits, self.params)
            self._extra += at_logits
            self._direct.append(at_params)
            if term is not None:
                terms.append(term)
        return terms

    def backward(self, losses: Tensor, terms: list[Tensor], ys: Tensor, n_ce: int, logits: Tensor) -> None:
        assert self._logp is not None
        # The cross-entropy's gradient on its rows, zeros on the others (as autograd's slice backward gives), then
        # each method's term on its rows: the additions autograd's accumulation makes, in its order.
        dlogits = per_sample_cross_entropy_grad(self._logp, ys)
        if n_ce != logits.shape[0]:
            dlogits = torch.cat([dlogits, dlogits.new_zeros(logits.shape[0] - n_ce, logits.shape[1])])
        for start, g in self._extra:
            dlogits[start:start + g.shape[0]] += g
        self.chain.backward_(dlogits, self._inputs, self.grads)  # overwrites every gradient: no zeroing
        for at_params in self._direct:  # what a derived term adds to the weights besides through the logits
            for g, d in zip(self.grads, at_params, strict=True):
                if d is not None:
                    g.add_(d)

    def release(self) -> None:
        self._inputs, self._logp, self._extra, self._direct = [], None, [], []

    def _param_grads(self, inputs: list[Tensor], logits: Tensor, at_logits: list[tuple[int, Tensor]]) -> list[Tensor]:
        """New gradient tensors of a loss given its gradient at the logits (rows placed at their first row)."""
        dlogits = torch.zeros_like(logits)
        for start, g in at_logits:
            dlogits[start:start + g.shape[0]] += g
        out = [torch.empty_like(p) for p in self.params]
        self.chain.backward_(dlogits, inputs, out)
        return out


def derived_grads(method: Method, step: Step, logits: Tensor, params: list[nn.Parameter]
                  ) -> tuple[list[tuple[int, Tensor]], list[Tensor | None], Tensor | None]:
    """A method that gives only :meth:`Method.loss`, on the closed form: autograd on its term alone, with the
    step's logits as a leaf. Returns the term's gradient at the logits (for the chain's backward), its gradient
    reaching the weights by any other path (a second forward, a weight penalty), and the term."""
    leaf = logits.detach().requires_grad_()
    view = dataclasses.replace(step, logits=leaf[:step.batch], draws={
        k: dataclasses.replace(seg, logits=leaf[seg.start:seg.start + len(seg)]) for k, seg in step.draws.items()})
    with torch.enable_grad():
        term = call(method, "loss", view)
    if term is None or not term.requires_grad:
        return [], [None] * len(params), term
    grads = torch.autograd.grad(term, [leaf, *params], allow_unused=True)
    at_logits = [(0, grads[0])] if grads[0] is not None else []
    return at_logits, list(grads[1:]), term.detach()


def closed_form(method: Method) -> bool:
    """True if ``method``'s loss term (if any) has its gradient at the logits in :meth:`Method.logit_grads`: the
    class that defines ``logit_grads`` is the one that defines ``loss`` or a subclass of it."""
    mro = type(method).__mro__
    loss_at = next(i for i, c in enumerate(mro) if "loss" in c.__dict__)
    grads_at = next(i for i, c in enumerate(mro) if "logit_grads" in c.__dict__)
    return mro[loss_at] is Method or grads_at <= loss_at
