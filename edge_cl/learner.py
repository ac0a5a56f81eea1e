"""OnlineLearner: the one task-free online update step; continual-learning methods plug into it."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from edge_cl import methods as method_registry
from edge_cl import models
from edge_cl.budget import SCRATCH_PART, MemoryBudget, tensor_bytes
from edge_cl.buffer import ReservoirBuffer
from edge_cl.buffer_storage import AUTO_STORAGE, F16_MAX, StorageCodec, lossless_uint8_range
from edge_cl.devices import resolve_device
from edge_cl.fixed_step import FixedStep, unsupported_reason
from edge_cl.learner_config import LearnerConfig, saved_config
from edge_cl.methods import Method, MethodContext, SampleField, Segment, Step
from edge_cl.methods.base import flat_zeros_like
from edge_cl.ncm import NCMPredictor
from edge_cl.optim import PlainSGD
from edge_cl.relu_chain import ReLUChain
from edge_cl.standardizer import Standardized
from edge_cl.state_file import atomic_save, safe_load
from edge_cl.step_engines import AutogradEngine, ClosedFormEngine, StepEngine, closed_form
from edge_cl.step_logits import why_step_logits_differ
from edge_cl.step_stats import LearnStats, StepCounters
from edge_cl.transaction import POST_STEP_HOOKS, STEP_HOOKS, Snapshot, call, keeps_state, overrides
from edge_cl.triggers import make_trigger

log = logging.getLogger("edge_cl")
_T = TypeVar("_T")

NCM_PART = "ncm"  # budget part of the class means kept for predict="ncm"
STATE_FORMAT = "edge_cl.learner"
STATE_VERSION = 2
OPTIMIZERS = ("sgd", "adam")

ArrayLike = np.ndarray | Tensor | list


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


class _Counter:
    """A learner counter (kept in :class:`StepCounters`) that first folds in a CUDA-graph step still in flight, so
    reading it is exact."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        fixed = obj.__dict__.get("_fixed")
        if fixed is not None:
            fixed.sync()
        return getattr(obj.counters, self.name)

    def __set__(self, obj: Any, value: int) -> None:
        setattr(obj.counters, self.name, value)


def config_from_arguments(budget_bytes: Any, importance: Any = _UNSET, **options: Any) -> LearnerConfig:
    """A :class:`LearnerConfig` from ``OnlineLearner``'s keyword arguments, with errors naming each key."""
    data: dict[str, Any] = {k: v for k, v in options.items() if v is not _UNSET}
    if budget_bytes is not None:
        data["budget_bytes"] = budget_bytes
    if importance is not _UNSET:
        data["importance"] = importance
    try:
        return LearnerConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(method_registry.describe_errors(exc)) from None


def _make_optimizer(cfg: LearnerConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if not cfg.momentum:
        return PlainSGD(params, lr=cfg.lr)  # torch.optim.SGD without its 1-2 s of start-up (edge_cl.optim)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def _optimizer_state_bytes(cfg: LearnerConfig, model: nn.Module) -> int:
    """Bytes the optimizer's state will take, measured by one step on throwaway copies."""
    if cfg.optimizer == "sgd" and not cfg.momentum:
        return 0  # plain SGD keeps no state
    params = [nn.Parameter(torch.zeros_like(p)) for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = _make_optimizer(cfg, params)
    opt.step()
    return tensor_bytes(t for s in opt.state.values() for t in s.values() if isinstance(t, Tensor))


def _flat_layout(params: list[nn.Parameter]) -> bool:
    return bool(params) and len({(p.dtype, p.device) for p in params}) == 1 and all(p.is_contiguous() for p in params)


def _flatten_params(params: list[nn.Parameter]) -> Tensor | None:
    """Make the parameters views of one flat buffer (returned; None when their dtypes, devices or layouts
    differ), so that the plain SGD step is one operation, not one per tensor. The Parameter objects stay
    the same: the model, its state_dict and the optimizer see no difference."""
    if not _flat_layout(params) or len({p.untyped_storage().data_ptr() for p in params}) != len(params):
        return None
    flat, views = flat_zeros_like(params)
    with torch.no_grad():
        for p, view in zip(params, views, strict=True):
            view.copy_(p)
            p.data = view
    return flat


def _allocate_grads(params: list[nn.Parameter]) -> Tensor | None:
    """Give every parameter a zero ``.grad``; views of one flat buffer when they share dtype and device and
    are contiguous (returned), else one tensor each (None)."""
    if _flat_layout(params):
        flat, views = flat_zeros_like(params)
        for p, view in zip(params, views, strict=True):
            p.grad = view
        return flat
    for p in params:
        p.grad = torch.zeros_like(p)
    return None


def _infer_io(model: nn.Module, device: torch.device, input_dim: int | None) -> tuple[int, int]:
    dim = input_dim if input_dim is not None else getattr(model, "input_dim", None)
    if dim is None:
        raise ValueError("the model has no input_dim attribute; pass input_dim=<features per sample> "
                         "to OnlineLearner")
    with torch.no_grad():
        was_training = model.training
        model.eval()
        out = model(torch.zeros((1, int(dim)), device=device))
        model.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"the model must return logits [B, num_classes]; it returned shape {tuple(out.shape)}")
    return int(dim), int(out.shape[1])


def _wrapped(model: nn.Module, cfg: LearnerConfig, num_classes: int) -> nn.Module:
    """``model`` as the methods want to run it (:meth:`Method.wrap_model`, e.g. PNN's columns); itself when none
    wraps it. Before the standardiser and the parameters are collected: the wrapper is the model from then on."""
    settings = cfg.method_settings()
    for name in cfg.method_names:
        wrapped = method_registry.get(name).wrap_model(model, settings[name], num_classes)
        if wrapped is not None:
            model = wrapped
    return model


def _build_methods(cfg: LearnerConfig, ctx: MethodContext) -> list[Method]:
    settings = cfg.method_settings()
    return [method_registry.get(name)(ctx, settings[name]) for name in cfg.method_names]


def _sample_fields(methods: list[Method]) -> dict[str, SampleField]:
    fields: dict[str, SampleField] = {}
    owner: dict[str, str] = {}
    for m in methods:
        for name, f in m.sample_fields().items():
            if name in fields:
                raise ValueError(f"methods {owner[name]!r} and {m.name!r} both store a per-sample field {name!r}; "
                                 "they cannot be combined")
            fields[name], owner[name] = f, m.name
    return fields


def _codec(cfg: LearnerConfig) -> StorageCodec:
    """The buffer's codec as configured; storage='auto' starts as float16 (the first batch may choose uint8)."""
    lo, hi = cfg.input_range if cfg.input_range is not None else (0.0, 1.0)
    return StorageCodec("float16" if cfg.storage == AUTO_STORAGE else cfg.storage, float(lo), float(hi))


def _vector_input(model: nn.Module) -> bool:
    """True for a model of vector inputs: no multi-dimensional ``input_shape`` (an image model has one)."""
    return len(tuple(getattr(model, "input_shape", ()) or ())) <= 1


def _standardized(model: nn.Module, cfg: LearnerConfig, dim: int, device: torch.device) -> nn.Module:
    """``model`` behind an online input standardiser when ``cfg.standardize``, or when it is None (the default)
    and the inputs are vectors: then the first batch learned decides whether it standardises (see
    :func:`_leave_raw`); its bytes are charged either way, so the buffer's size never depends on the data."""
    if isinstance(model, Standardized):
        return model
    if not (cfg.standardize or (cfg.standardize is None and _vector_input(model))):
        return model
    return Standardized(model, dim).to(device)


def _model_parts(model: nn.Module) -> dict[str, list[Tensor]]:
    """The model's tensors by budget part: the standardiser's running statistics are a part of their own."""
    inner = model.model if isinstance(model, Standardized) else model
    parts = {"parameters": [*inner.parameters(), *inner.buffers()]}
    if isinstance(model, Standardized):
        parts["standardizer"] = list(model.standardizer.buffers())
    return parts


def _fixed_parts(cfg: LearnerConfig, ctx: MethodContext, methods: list[Method]) -> dict[str, int]:
    """Bytes of the state that does not grow with the stream, by part (one part per method)."""
    model = ctx.model
    model_parts = _model_parts(model)
    parts = {"parameters": tensor_bytes(model_parts["parameters"]),
             "gradients": sum(p.nbytes for p in model.parameters() if p.requires_grad),
             "optimizer": _optimizer_state_bytes(cfg, model)}
    if "standardizer" in model_parts:
        parts["standardizer"] = tensor_bytes(model_parts["standardizer"])
    for m in methods:
        parts[m.name] = tensor_bytes(m.tensors())
    if cfg.predict == "ncm":
        parts[NCM_PART] = NCMPredictor.bytes_for(model, ctx.num_classes, ctx.input_dim, ctx.device)
    parts[SCRATCH_PART] = 0
    return parts


def _context(model: nn.Module, cfg: LearnerConfig, device: torch.device, generator: torch.Generator, dim: int,
             num_classes: int) -> MethodContext:
    params = [p for p in model.parameters() if p.requires_grad]
    return MethodContext(model=model, params=params, device=device, generator=generator, num_classes=num_classes,
                         input_dim=dim, lr=cfg.lr, optimizer=cfg.optimizer, replay_batch=cfg.replay_batch,
                         momentum=cfg.momentum)


@dataclass
class _Plan:
    """The methods a configuration builds, what they store per sample, and the bytes that follow from them."""

    methods: list[Method]
    fields: dict[str, SampleField]
    codec: StorageCodec
    per_sample: int
    fixed: dict[str, int]


def _plan(cfg: LearnerConfig, ctx: MethodContext) -> _Plan:
    """Build the methods (allocating their tensors) and size everything: one path for a learner and for
    :meth:`OnlineLearner.required_bytes`."""
    built = _build_methods(cfg, ctx)
    fields = _sample_fields(built)
    codec = _codec(cfg)
    return _Plan(built, fields, codec, ReservoirBuffer.bytes_per_sample(ctx.input_dim, codec, fields, ctx.num_classes),
                 _fixed_parts(cfg, ctx, built))


def _budget(cfg: LearnerConfig, fixed: dict[str, int], per_sample: int) -> MemoryBudget:
    replay = cfg.uses_buffer()
    return MemoryBudget(cfg.budget_bytes, fixed, per_sample, min_buffer_samples=cfg.replay_batch if replay else 0,
                        max_buffer_samples=cfg.max_buffer_samples if replay else 0)


class OnlineLearner:
    """Task-free online continual learner inside ``budget_bytes``: one step, methods plugged into it.

    ``method`` names registered methods combined with '+' ("er", "er+ewc", see
    ``edge_cl.methods.available()``); their settings are keyword arguments too. The older spelling
    ``importance="mas", replay_batch=10`` means ``method="er+mas"``. Each :meth:`learn` call is one
    optimizer step on the new micro-batch plus the methods' replay draws; no task ids are ever needed.
    """

    step = _Counter()             # optimizer steps taken
    samples_learned = _Counter()  # new samples learned (test-then-train counted)
    correct_learned = _Counter()  # of them predicted right before their step
    skipped_steps = _Counter()    # steps skipped (non-finite loss or gradients)

    def __init__(self, model: nn.Module, budget_bytes: int | None = None, importance: str | None = _UNSET,
                 replay_batch: int = 10, lr: float = 0.1, device: str | torch.device | None = None, seed: int = 0,
                 **options: Any) -> None:
        if budget_bytes is None and "config" not in options:
            raise ValueError("budget_bytes is required: the bytes all learner state may take "
                             "(OnlineLearner.required_bytes(model, buffer_samples=N, ...) computes one)")
        cfg = options.pop("config", None)
        if cfg is None:
            cfg = config_from_arguments(budget_bytes, importance, replay_batch=replay_batch, lr=lr, seed=seed,
                                        device=str(device) if device is not None else "auto", **options)
        elif not isinstance(cfg, LearnerConfig):
            raise ValueError(f"config must be a LearnerConfig, got {type(cfg).__name__}")
        elif type(cfg) is not LearnerConfig:
            # A subclass (the daemon's table) carries keys of its own; the learner keeps and saves its part.
            narrow = getattr(cfg, "learner_config", None)
            cfg = narrow() if callable(narrow) else LearnerConfig.model_validate(
                {k: getattr(cfg, k) for k in LearnerConfig.model_fields})
        self.config: LearnerConfig = cfg
        self.device = resolve_device(device if device is not None else cfg.device)
        log.info("edge_cl learner on %s (method %s)", self.device, cfg.method)
        self.model = model.to(self.device)
        self.input_dim, self.num_classes = _infer_io(self.model, self.device, cfg.input_dim)
        self.input_shape: tuple[int, ...] = tuple(getattr(model, "input_shape", (self.input_dim,)))
        self.model = _standardized(_wrapped(self.model, cfg, self.num_classes), cfg, self.input_dim, self.device)
        self.standardizer = self.model.standardizer if isinstance(self.model, Standardized) else None
        # The model's own buffers (BatchNorm's running statistics): a train-mode forward updates them in place.
        self._model_buffers = [b for b in _model_parts(self.model)["parameters"] if not isinstance(b, nn.Parameter)]
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        ctx = _context(self.model, cfg, self.device, self.generator, self.input_dim, self.num_classes)
        # Parameters as views of one buffer: a plain SGD step (and a method's pass over all weights) is then one
        # operation, not one per tensor (see _optimizer_step). Done before the methods are built, so they see it.
        ctx.flat_params = _flatten_params(ctx.params)
        self.params = ctx.params
        plan = _plan(cfg, ctx)
        self.methods: list[Method] = plan.methods
        self.ncm = (NCMPredictor(self.model, self.num_classes, self.input_dim, self.device)
                    if cfg.predict == "ncm" else None)
        self._fields = plan.fields
        self.budget = _budget(cfg, plan.fixed, plan.per_sample)
        self.buffer = self._new_buffer(plan.codec)
        # storage='auto': the first batch learned chooses (float16, or uint8 for 8-bit data), saved in the state.
        self._storage_pending = cfg.storage == AUTO_STORAGE
        self._u8_limits: tuple[float, float] | None = None  # the range auto chose uint8 over (checked every batch)
        self._u8_range_warned = False
        # Gradients live for the learner's lifetime (counted once), as views of one flat buffer when the
        # parameters allow it: zeroing, the norm and the clip are then one operation each, not one per tensor.
        self._flat_grad = _allocate_grads(self.params)
        self._grads: list[Tensor] = [p.grad for p in self.params if p.grad is not None]
        self._flat_param = ctx.flat_params if self._flat_grad is not None else None
        # A Linear/ReLU model whose methods give their terms' gradients at the logits steps without the autograd
        # engine (edge_cl/relu_chain.py: the same operations, the same bits, a quarter of the step's time saved).
        self._ctx = ctx
        self._chain: ReLUChain | None = None
        self._use_chain(True)
        self.optimizer = _make_optimizer(cfg, self.params)
        self.trigger = make_trigger(cfg.trigger, **cfg.trigger_params)
        self._fixed: FixedStep | None = None
        self._fixed_decided = False
        # What a failing step must put back (edge_cl.transaction): methods with state, and the weights when a
        # method works after they moved.
        self._stateful = [m for m in self.methods if keeps_state(m)]
        self._all_buffers = list(self.model.buffers())  # the transaction keeps them all (standardiser too)
        self._post_step = any(overrides(m, h) for m in self.methods for h in POST_STEP_HOOKS)
        # The methods that do something in each step hook (the base's hooks do nothing: no call for them).
        self._hooked = {h: [m for m in self.methods if overrides(m, h)] for h in STEP_HOOKS}
        self._hooked["loss"] = [m for m in self.methods if overrides(m, "loss") or overrides(m, "logit_grads")]
        self._transaction: Snapshot | None = None  # the snapshot of the step in progress
        self._nonfinite_warned = False
        self.counters = StepCounters()
        self.consolidations = 0
        self.unlabeled_seen = 0
        self.extra: dict[str, Any] = {}
        # standardize=None on vector inputs: the first finite batch learned decides (True / False), kept in the state.
        self._auto_standardize: bool | None = None
        if cfg.standardize is None and self.standardizer is not None:
            self._auto_standardize = True  # undecided: stays True until the first batch says otherwise
            self._standardize_decided = False
        else:
            self._standardize_decided = True
        self._scales_checked = self.standardizer is not None  # raw-unit inputs are looked at once (see learn)
        self._f16 = plan.codec.kind == "float16"
        self._f16_checked = not self._f16
        # float16's range is checked on every batch on the CPU (one reduction); on an accelerator only until the
        # checks above are done (no host synchronisation per step), and the codec saturates at +-65504 after that.
        self._f16_every_step = self._f16 and self.device.type == "cpu"
        self._f16_range_warned = False

    def _use_chain(self, on: bool) -> None:
        """Step a Linear/ReLU model without autograd when it allows it (``on``: the closed-form engine), else with
        autograd (benchmarks and tests compare the two). See edge_cl.step_engines."""
        self._chain = (ReLUChain.of(self.model, self.params) if on and self._flat_grad is not None else None)
        self._ctx.chain = self._chain is not None
        closed = {m.name: closed_form(m) for m in self.methods}
        self._engine: StepEngine = (
            ClosedFormEngine(self._chain, self.params, self._grads, lambda m: closed[m.name])
            if self._chain is not None else AutogradEngine(self.model, self._grads, self._flat_grad))

    @property
    def all_buffers(self) -> list[Tensor]:
        """Every buffer of the model (BatchNorm's running statistics, the input standardiser's): what a step's
        transaction keeps and puts back."""
        return self._all_buffers

    @property
    def flat_param(self) -> Tensor | None:
        """The one buffer the trainable parameters are views of (None when their layout does not allow it)."""
        return self._flat_param

    @property
    def flat_grad(self) -> Tensor | None:
        """The one buffer the parameters' gradients are views of (None when their layout does not allow it)."""
        return self._flat_grad

    @property
    def step_path(self) -> str:
        """Which step :meth:`learn` runs: 'graph' (captured CUDA graphs), 'fixed' (the fixed-shape step, uncaptured)
        or 'eager' (decided at the first call; a failed capture turns 'graph' into 'eager')."""
        fixed = self._fixed_step()
        if fixed is None or fixed.fallback is not None:
            return "eager"
        return "graph" if fixed.capture else "fixed"

    def _fixed_step(self) -> FixedStep | None:
        """The fixed-shape step when ``step_mode`` asks for it and the configuration allows it (logged once)."""
        if self._fixed_decided:
            return self._fixed
        self._fixed_decided = True
        mode = self.config.step_mode
        if mode == "eager" or (mode == "auto" and self.device.type != "cuda"):
            return None
        reason = unsupported_reason(self)
        if reason is not None:
            (log.warning if mode == "fixed" else log.info)(
                "edge_cl: the fixed-shape step is off for this learner (%s); it runs the eager step", reason)
            return None
        self._fixed = FixedStep(self, capture=self.device.type == "cuda", exact_stats=self.config.exact_stats)
        return self._fixed

    def _settle(self) -> None:
        """Fold a fixed-shape step still in flight into the counters (before anything reads them)."""
        if self._fixed is not None:
            self._fixed.sync()

    @classmethod
    def from_config(cls, model: nn.Module, config: LearnerConfig,
                    device: str | torch.device | None = None) -> OnlineLearner:
        """The learner a :class:`LearnerConfig` describes (``device`` overrides the config's)."""
        return cls(model, config=config, device=device if device is not None else config.device)

    @property
    def method(self) -> str:
        """The methods this learner runs, e.g. ``"er+ewc"``."""
        return self.config.method

    def get_method(self, name: str) -> Method:
        """The running instance of method ``name``."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"this learner runs {self.config.method!r}, which has no method {name!r}")

    @property
    def importance(self) -> Any:
        """The first parameter-importance method (EWC, MAS ...) of the combination, or None."""
        return next((m for m in self.methods if isinstance(m, method_registry.ImportanceMethod)), None)

    # --- budget -----------------------------------------------------------------------------------
    @classmethod
    def required_bytes(cls, model: nn.Module, buffer_samples: int, importance: str | None = _UNSET,
                       replay_batch: int = 10, **options: Any) -> int:
        """The ``budget_bytes`` that gives exactly ``buffer_samples`` of replay buffer for this setup."""
        options.pop("device", None)
        cfg = config_from_arguments(1, importance, replay_batch=replay_batch, **options)
        device = next(model.parameters()).device
        dim, num_classes = _infer_io(model, device, cfg.input_dim)
        model = _standardized(_wrapped(model, cfg, num_classes), cfg, dim, device)
        plan = _plan(cfg, _context(model, cfg, device, torch.Generator(device=device).manual_seed(cfg.seed), dim,
                                   num_classes))
        return MemoryBudget.required(plan.fixed, plan.per_sample, buffer_samples if cfg.uses_buffer() else 0)

    def owned_tensors(self) -> dict[str, list[Tensor]]:
        """Every tensor the learner owns, by budget part (one part per method)."""
        opt_state = [t for s in self.optimizer.state.values() for t in s.values() if isinstance(t, Tensor)]
        owned: dict[str, list[Tensor]] = {
            **_model_parts(self.model),
            "gradients": [p.grad for p in self.params if p.grad is not None],
            "optimizer": opt_state,
        }
        for m in self.methods:
            owned[m.name] = m.tensors()
        if self.ncm is not None:
            owned[NCM_PART] = self.ncm.tensors()
        owned["buffer"] = self.buffer.tensors()
        owned[SCRATCH_PART] = []
        return owned

    def memory_report(self) -> dict[str, Any]:
        """Every byte of learner state by part against the budget, plus process RSS beside it."""
        self._settle()
        report = self.budget.report(self.owned_tensors(), len(self.buffer))
        method_reports = {m.name: m.report() for m in self.methods}
        importance = [method_reports[m.name] for m in self.methods
                      if isinstance(m, method_registry.ImportanceMethod)]
        report.update({
            "method": self.config.method,
            "methods": method_reports,
            "buffer_fields": {name: t.nbytes for name, t in self.buffer.tensors_by_field().items()},
            "buffer_field_bytes_per_sample": ReservoirBuffer.field_bytes(self.input_dim, self.buffer.codec,
                                                                         self.buffer.fields, self.num_classes),
            "device": str(self.device),
            "buffer_fill_ratio": len(self.buffer) / self.budget.buffer_capacity if self.budget.buffer_capacity else 0.0,
            # Transient, freed after each importance estimate; not learner state, so not in used_bytes.
            "step_workspace_bytes": sum(int(r.get("workspace_bytes", 0)) for r in method_reports.values())
            + (self._fixed.workspace_bytes() if self._fixed is not None else 0),
            "importance_updates": sum(int(r["updates"]) for r in importance),
            "importance_seconds": sum(float(r["seconds"]) for r in importance),
            "process_rss_bytes": _rss_bytes(),
        })
        return report

    # --- inputs -----------------------------------------------------------------------------------
    def _inputs(self, x: ArrayLike) -> Tensor:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"x must be numbers [B, {self.input_dim}]; it cannot be read as a tensor ({exc})") from None
        if t.ndim < 2:
            raise ValueError(f"x must be a batch [B, {self.input_dim}] (or [B, *{self.input_shape}]); got shape "
                             f"{tuple(t.shape)}. For one sample pass x[None]")
        if t.shape[0] == 0:
            raise ValueError(f"x holds no samples (shape {tuple(t.shape)}); pass at least one row")
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"x must hold real numbers, got dtype {t.dtype}")
        per_sample = tuple(t.shape[1:])
        if per_sample not in ((self.input_dim,), self.input_shape):
            # A silently flattened (10, 6, 1) would hide a caller's mix-up of samples and features.
            shapes = f"[B, {self.input_dim}]" + (f" or [B, {', '.join(map(str, self.input_shape))}]"
                                                 if self.input_shape != (self.input_dim,) else "")
            raise ValueError(f"x has shape {tuple(t.shape)}: {math.prod(per_sample)} features per sample in shape "
                             f"{per_sample}; the model takes {shapes}. Reshape it first (e.g. x.reshape(len(x), -1) "
                             "if the features are all there)")
        t = t.reshape(t.shape[0], -1)
        return t.to(device=self.device, dtype=torch.float32, non_blocking=True)

    def _labels(self, y: ArrayLike, batch: int) -> Tensor:
        if isinstance(y, np.ndarray) and y.dtype.kind not in "iu":
            raise ValueError(f"y must hold integer class ids in [0, {self.num_classes}), got numpy dtype {y.dtype}")
        try:
            t = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"y must hold integer class ids in [0, {self.num_classes}); got {type(y).__name__} "
                             f"that is not numbers (e.g. strings): map labels to ids first") from None
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"y must hold integer class ids, got dtype {t.dtype}")
        t = t.reshape(-1)
        if t.shape[0] != batch:
            raise ValueError(f"y has {t.shape[0]} labels for {batch} samples")
        if batch:
            if isinstance(y, np.ndarray):
                # A micro-batch is small: Python's min / max over a list beat two numpy reductions.
                ys = y.reshape(-1).tolist() if y.size <= 256 else None
                lo, hi = (min(ys), max(ys)) if ys is not None else (int(y.min()), int(y.max()))
            else:
                lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(f"labels must be in [0, {self.num_classes}); got min {lo}, max {hi}")
        return t.to(device=self.device, dtype=torch.int64, non_blocking=True)

    # --- the step ---------------------------------------------------------------------------------
    def learn(self, x: ArrayLike, y: ArrayLike, *, replay: int | None = None, keep_logits: bool = False) -> LearnStats:
        """One online step: the new micro-batch plus the methods' replay draws in one forward, the
        cross-entropy plus the methods' loss terms, one optimizer step, the methods' after-step work and the
        trigger, then the buffer insert. A non-finite loss, or gradients that overflow, skip the step and leave
        the whole state as it was; so does a method that raises in any hook, and the error
        (:class:`~edge_cl.transaction.MethodError`) names the method and the hook.

        ``replay``: rows per replay draw for this step only (default ``replay_batch``; the fixed-shape step keeps
        its own). ``keep_logits``: return the new rows' logits of this step's forward, taken before the update, in
        ``LearnStats.logits`` (eager step, no row dropped); see :meth:`step_logits_differ` for when they are the
        prediction :meth:`predict_proba` would give."""
        started = time.perf_counter()
        if self._flat_param is not None and self.params[0].data_ptr() != self._flat_param.data_ptr():
            raise RuntimeError("the model's parameters were replaced after the learner was built (model.to(), "
                               ".half(), load_state_dict(assign=True) ...); the learner steps the weights it was "
                               "built with. Load weights with learner.model.load_state_dict(...) (in place), "
                               "or build a new OnlineLearner")
        if self._chain is not None and self._chain.hooked():
            self._use_chain(False)  # a forward hook was added: the modules must run, so autograd from now on
        xb = self._inputs(x)
        yb = self._labels(y, xb.shape[0])
        if replay is not None and replay < 0:
            raise ValueError(f"replay={replay} must be >= 0 (rows per replay draw for this step)")
        # The batch's range only where something reads it; otherwise a row with NaN / Inf shows as a skipped step
        # (its loss is not finite), and only then are the rows looked at: the common, all-finite batch pays nothing.
        eager_rows = self._needs_bounds()
        dropped, bounds = 0, None
        if eager_rows:
            xb, yb, dropped, bounds = self._finite_rows(xb, yb)
        configured = self._ctx.replay_batch
        # The methods' draws read it each step. Not while the first batch decides (the fixed-shape step may be
        # rebuilt then) nor on the fixed-shape step: it sized its draws when it was built.
        if replay is not None and self.inputs_decided and self._fixed_step() is None:
            self._ctx.replay_batch = int(replay)
        try:
            stats = self._learn(xb, yb, started, bounds, keep_logits and not dropped)
            if stats.skipped and not eager_rows and stats.lag == 0:
                retry = self._finite_rows(xb, yb)
                if retry[2]:
                    # The skip was the bad rows' doing: it is undone, and the step runs on the other rows.
                    self.counters.skipped_steps -= 1
                    xb, yb, dropped, bounds = retry
                    stats = self._learn(xb, yb, started, bounds, False)
        finally:
            self._ctx.replay_batch = configured
        return replace(stats, dropped=dropped) if dropped else stats

    def _needs_bounds(self) -> bool:
        """True when this step reads the batch's (min, max) -- the input checks, the standardiser's update -- or
        may run on the fixed-shape step, whose skip is not undone whole (it keeps its random draws)."""
        if self._fixed_decided:
            fixed = self._fixed is not None
        else:
            fixed = self.config.step_mode == "fixed" or (self.config.step_mode == "auto" and self.device.type == "cuda")
        return fixed or self.standardizer is not None or self._inputs_to_check()

    def _inputs_to_check(self) -> bool:
        """True while :meth:`_check_inputs` has something left to decide or watch."""
        return ((self._f16_every_step and not self._f16_range_warned) or self._storage_pending
                or (self._u8_limits is not None and not self._u8_range_warned)
                or not (self._standardize_decided and self._scales_checked and self._f16_checked))

    @property
    def inputs_decided(self) -> bool:
        """True once the first batch learned has decided what it decides (standardiser, buffer storage)."""
        return self._standardize_decided and not self._storage_pending

    def step_logits_differ(self) -> str | None:
        """Why the next :meth:`learn` step's logits on its new rows (``keep_logits``) would not be what
        :meth:`predict_proba` gives before that step, in words; None when they would (see edge_cl.step_logits)."""
        return why_step_logits_differ(self)

    def _finite_rows(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor, int, tuple[float, float] | None]:
        """The rows without NaN / Inf, how many were left out, and the (min, max) of the rows kept (the input
        checks and the step reuse them; None: not known to be finite): one bad cell must not cost its batch's other
        rows (warned once). A batch with no finite row is left whole, for the step to skip. The CUDA-graph step
        never waits for the host, so there the step skips instead (as it does for overflowing gradients)."""
        fixed = self._fixed
        if fixed is not None and fixed.capture and fixed.fallback is None:
            return xb, yb, 0, None
        low, high = torch.aminmax(xb)  # NaN propagates: one reduction tells the common, all-finite case
        bounds = (float(low), float(high))
        if math.isfinite(bounds[0]) and math.isfinite(bounds[1]):
            return xb, yb, 0, bounds
        finite = torch.isfinite(xb).all(1)
        kept = int(finite.sum())
        if kept == 0:
            return xb, yb, 0, None
        dropped = xb.shape[0] - kept
        if not self._nonfinite_warned:
            self._nonfinite_warned = True
            log.warning("learn(): %d of %d rows hold NaN or Inf; they were left out and the other %d learned "
                        "(LearnStats.dropped counts them; warned once)", dropped, xb.shape[0], kept)
        xb, yb = xb[finite], yb[finite]
        low, high = torch.aminmax(xb)
        return xb, yb, dropped, (float(low), float(high))

    def _learn(self, xb: Tensor, yb: Tensor, started: float, bounds: tuple[float, float] | None,
               keep_logits: bool = False) -> LearnStats:
        if self._inputs_to_check():
            self._check_inputs(xb, bounds)
        fixed = self._fixed_step()
        if fixed is not None:
            # The same transaction as the eager step's, wherever a method's code can fail in the fixed-shape step.
            stats = (self._transact(fixed.post_step, fixed.learn, xb, yb, started) if fixed.fallible
                     else fixed.learn(xb, yb, started))
            if stats is not None:
                return stats
        try:
            return self._transact(self._post_step, self._eager_step, xb, yb, started, keep_logits,
                                  bounds is not None)
        finally:
            self._engine.release()

    def _transact(self, post_step: bool, step: Callable[..., _T], *args: Any) -> _T:
        """``step(*args)`` as a transaction: if it raises, the learner's state is put back (edge_cl.transaction)."""
        snapshot = self._transaction = Snapshot(self, self._stateful, post_step)
        try:
            return step(*args)
        except Exception:
            snapshot.restore(self)
            raise
        finally:
            self._transaction = None

    def _check_inputs(self, xb: Tensor, bounds: tuple[float, float] | None = None) -> None:
        """What the inputs' scale decides or calls for, before the step touches any state: the automatic
        standardiser's decision (first finite batch), float16 storage's range (every batch) and precision (once the
        standardiser has seen enough rows), and the scale warning for raw inputs (once). ``bounds``: the batch's
        (min, max) when already known."""
        if bounds is None:
            low, high = torch.aminmax(xb)
            bounds = (float(low), float(high))
        if not (math.isfinite(bounds[0]) and math.isfinite(bounds[1])):
            return  # a non-finite batch is skipped by the step; it decides nothing
        peak = max(-bounds[0], bounds[1])
        if self._storage_pending:
            self._choose_storage(xb)
        if self._u8_limits is not None and not self._u8_range_warned:
            self._check_u8_range(bounds)
        if self._f16 and not self._f16_range_warned and peak > F16_MAX:
            # Not an error: a fuzzing client or a glitching sensor must not stop the learner (the contract suite).
            self._f16_range_warned = True
            col = int(xb.abs().amax(0).argmax())
            log.warning("input feature %d reaches %.6g, beyond what storage='float16' (the default buffer storage) "
                        "holds: the replay buffer keeps it saturated at +-%g, so replays of such samples are not the "
                        "samples seen. Pass storage='float32' to keep raw values this large, or scale the inputs "
                        "first (e.g. kPa instead of Pa)", col, peak, F16_MAX)
        if not self._standardize_decided:
            self._standardize_decided = True
            self._auto_standardize = not _leave_raw(xb, peak)
            if self._auto_standardize:
                log.info("standardising the inputs online (standardize=None on vector inputs that are not sparse "
                         "values in [-%g, %g]); pass standardize=False to learn on them as they are", BOUNDED_SCALE,
                         BOUNDED_SCALE)
            else:
                log.info("inputs are sparse values in [-%g, %g] (pixels, one-hot codes): learning on them as they are "
                         "(standardize=None); pass standardize=True to standardise them", BOUNDED_SCALE, BOUNDED_SCALE)
                self._drop_standardizer()
        if not self._scales_checked:
            self._scales_checked = True
            warning = _scale_warning(xb)
            if warning:
                log.warning(warning)
        if not self._f16_checked and self.standardizer is None:
            self._f16_checked = True  # bounded or pre-scaled inputs: float16 keeps their 3 digits
        elif not self._f16_checked and float(self.standardizer.count) + xb.shape[0] >= F16_CHECK_ROWS:
            self._f16_checked = True
            warning = _f16_warning(self.standardizer.mean, self.standardizer.var)
            if warning:
                log.warning(warning)

    def _new_buffer(self, codec: StorageCodec) -> ReservoirBuffer:
        return ReservoirBuffer(self.budget.buffer_capacity, self.input_dim, device=self.device, codec=codec,
                               class_balanced=self.config.class_balanced, generator=self.generator,
                               fields=self._fields, num_classes=self.num_classes)

    def _choose_storage(self, xb: Tensor) -> None:
        """storage='auto', on the first finite batch learned: uint8 when the batch is 8-bit data (it holds them
        exactly, in half float16's bytes), float16 otherwise. The buffer is still empty, so it is rebuilt at the
        capacity the budget gives the chosen storage."""
        self._storage_pending = False
        limits = lossless_uint8_range(xb) if self.buffer.seen == 0 else None
        if limits is None:
            log.info("storing buffered inputs as float16 (storage='auto': the first batch is not 8-bit data)")
            return
        self._use_storage(StorageCodec("uint8", *limits))
        log.info("storing buffered inputs as uint8 over [%g, %g] (storage='auto': the first batch is 8-bit data, "
                 "which uint8 holds exactly): %d samples fit; pass storage='float16' to keep other values later",
                 limits[0], limits[1], self.buffer.capacity)

    def _use_storage(self, codec: StorageCodec) -> None:
        """Rebuild the (empty) buffer with ``codec`` at the capacity the budget gives it."""
        per_sample = ReservoirBuffer.bytes_per_sample(self.input_dim, codec, self._fields, self.num_classes)
        self.budget = _budget(self.config, self.budget.fixed, per_sample)
        self.buffer = self._new_buffer(codec)
        if codec.kind == "uint8":
            self._u8_limits = (codec.lo, codec.hi)
        self._f16 = codec.kind == "float16"
        self._f16_every_step = self._f16 and self.device.type == "cpu"
        self._f16_checked = self._f16_checked or not self._f16
        self._forget_fixed_step()  # it sized itself on the old buffer

    def _check_u8_range(self, bounds: tuple[float, float]) -> None:
        """Inputs outside the range auto chose uint8 over are clamped in the buffer: say so, once."""
        lo, hi = self._u8_limits  # type: ignore[misc]
        low, high = bounds
        if low < lo or high > hi:
            self._u8_range_warned = True
            log.warning("inputs reach [%.6g, %.6g], outside the [%g, %g] that storage='auto' chose uint8 for (the "
                        "first batch was 8-bit data): the replay buffer keeps such values clamped. Pass "
                        "storage='float16' when the inputs are not all 8-bit data", low, high, lo, hi)
        elif self.device.type != "cpu":
            self._u8_range_warned = True  # no host synchronisation per step on an accelerator: checked once

    def _load_storage(self, saved: dict[str, Any] | None) -> None:
        """Restore storage='auto''s choice saved by :meth:`state_dict` (None: not chosen yet)."""
        if self.config.storage != AUTO_STORAGE:
            return
        if saved is None:
            if not self._storage_pending:
                raise ValueError("the saved state had not chosen its storage yet (storage='auto'), this learner has; "
                                 "load the state into a new learner")
            return
        self._storage_pending = False
        codec = StorageCodec(saved["kind"], float(saved["lo"]), float(saved["hi"]))
        if codec != self.buffer.codec:
            self._use_storage(codec)

    def _load_auto_standardize(self, decided: bool | None) -> None:
        """Restore the automatic standardiser's decision saved by :meth:`state_dict` (None: not decided yet)."""
        if self.config.standardize is not None or not isinstance(self.model, Standardized):
            return
        if decided is None:
            if self._standardize_decided and self._auto_standardize is False:
                raise ValueError("the saved state's standardiser had not decided yet, this learner has turned it off; "
                                 "load the state into a new learner")
            self.standardizer, self._auto_standardize, self._standardize_decided = self.model.standardizer, True, False
            self._scales_checked = True
            return
        self._standardize_decided = True
        self._auto_standardize = bool(decided)
        if decided:
            self.standardizer = self.model.standardizer
            self.standardizer.passthrough = False
            self._scales_checked = True
        else:
            self._drop_standardizer()
            self._scales_checked = True  # the saved learner looked at its first batch already

    def _drop_standardizer(self) -> None:
        """The automatic standardiser decided off: it stays in the model (and the budget, the state, the ONNX graph)
        with no statistics, which is the identity on inputs in [-5, 5], and is never updated."""
        if isinstance(self.model, Standardized):
            self.model.standardizer.passthrough = True
        self.standardizer = None
        self._scales_checked = False
        self._forget_fixed_step()

    def _forget_fixed_step(self) -> None:
        """Decide the fixed-shape step again at the next call: it was built on a buffer or standardiser since
        replaced."""
        if self._fixed is not None:
            self._fixed = None
            self._fixed_decided = False

    def _eager_step(self, xb: Tensor, yb: Tensor, started: float, keep_logits: bool = False,
                    finite: bool = False) -> LearnStats:
        """The step on autograd (or the Linear/ReLU closed form): every method hook, in the documented order.
        ``finite``: ``xb`` is known to hold no NaN / Inf (else it is looked at here)."""
        batch = xb.shape[0]
        kept: list[Tensor] | None = None
        if self.standardizer is not None and (finite or _all_finite(xb)):
            # Updated before the forward, so the first rows are already standardised; kept to undo on a skip.
            kept = [b.clone() for b in self.standardizer.buffers()]
            self.standardizer.update(xb)
        # Kept to undo on a skip: the forward of a non-finite batch would leave NaN running statistics behind.
        buffers = [b.clone() for b in self._model_buffers] if self._model_buffers else None
        draws = [d for m in self._hooked["replay_draws"] for d in call(m, "replay_draws")]
        if len({d.key for d in draws}) != len(draws):
            raise ValueError(f"methods {self.config.method!r} ask for replay draws with the same key "
                             f"{[d.key for d in draws]}; each method must use keys of its own")
        # A skipped step must leave the random state as it was (the draws, or a method's loss, consume it): the
        # transaction's copy, taken before anything in this step drew a random number.
        rng_state = (self._transaction.generator if self._transaction is not None
                     else self.generator.get_state() if draws and len(self.buffer) else None)
        drawn = [(d, *self.buffer.draw_with_slots(d.size)) for d in draws]
        for m in self._hooked["begin_step"]:
            call(m, "begin_step", self.step)
        # Rows that join the cross-entropy come first (new, then joined draws), the others after them.
        order = [(d, f) for d, f, _ in drawn if d.join_ce] + [(d, f) for d, f, _ in drawn if not d.join_ce]
        if self._hooked["before_forward"]:
            replayed = [(d.key, f) for d, f in order if f["y"].shape[0]]
            for m in self._hooked["before_forward"]:
                call(m, "before_forward", batch, replayed)
        parts_x = [xb] + [f["x"] for _, f in order if f["y"].shape[0]]
        xs = torch.cat(parts_x) if len(parts_x) > 1 else xb
        n_ce = batch + sum(int(f["y"].shape[0]) for d, f in order if d.join_ce)
        joined = [f["y"] for d, f in order if d.join_ce and f["y"].shape[0]]
        ys = torch.cat([yb, *joined]) if joined else yb
        replay = xs.shape[0] - batch

        if not self.model.training:
            self.model.train()
        engine = self._engine
        logits = engine.forward(xs)
        losses = engine.cross_entropy(logits if n_ce == logits.shape[0] else logits[:n_ce], ys)
        step = Step(index=self.step, x=xb, y=yb, logits=logits[:batch])
        engine.prepare(step, logits)
        row = batch
        for d, f in order:
            k = int(f["y"].shape[0])
            step.draws[d.key] = Segment(fields=f, logits=logits[row:row + k], start=row)
            row += k
        terms = engine.terms(self._hooked["loss"], step, logits)
        correct = (logits[:batch].detach().argmax(1) == yb).sum(dtype=losses.dtype)
        # One device-to-host transfer per step: every per-sample loss, the hit count and the extra terms.
        values = torch.cat([losses.detach(), correct.unsqueeze(0), *(t.detach().reshape(1) for t in terms)]).tolist()
        n_correct = values[n_ce]
        loss_new = sum(values[:batch]) / batch
        # The sum of float32-born values is finite exactly when each one is (no overflow below 1e308).
        # Detached before the update: the test-then-train prediction of the new rows (edge_cl.step_logits).
        new_logits = logits[:batch].detach().clone() if keep_logits else None
        if not math.isfinite(sum(values)):
            return replace(self._skip(rng_state, kept, loss_new, batch, replay, started, xb, drawn, buffers),
                           logits=new_logits)

        engine.backward(losses, terms, ys, n_ce, logits)
        for m in self._hooked["before_update"]:
            call(m, "before_update", step)
        # A finite loss can still overflow its gradients (huge finite inputs): one step on them would leave
        # the parameters non-finite for good, so such a step is skipped like a non-finite loss; and no step
        # moves the parameters further than max_grad_norm allows, so no input can make them diverge.
        flat = self._flat_grad
        # A BLAS dot is the cheapest reduction here; it overflows (-> skip) only past |g| ~ 1e19, no real step.
        squared = float(torch.dot(flat, flat)) if flat is not None else float(
            torch.stack(torch._foreach_norm(self._grads)).square().sum())
        norm = math.sqrt(squared) if squared >= 0 else math.nan
        if not math.isfinite(norm):
            return replace(self._skip(rng_state, kept, loss_new, batch, replay, started, xb, drawn, buffers),
                           logits=new_logits)
        limit = self.config.max_grad_norm
        if limit is not None and norm > limit:
            if flat is not None:
                flat.mul_(limit / norm)
            else:
                torch._foreach_mul_(self._grads, limit / norm)
        # The per-sample values come from this step's forward: taken before the weights move, so that a method
        # failing here leaves nothing to undo but what the snapshot at the start of the call holds.
        stored: dict[str, Tensor] = {}
        for m in self._hooked["sample_values"]:
            stored.update(call(m, "sample_values", step))
        for m in self._hooked["before_step"]:
            call(m, "before_step", step)
        self._optimizer_step()
        for m in self._hooked["after_update"]:
            call(m, "after_update", step)
        consolidated = self.trigger is not None and self.trigger.observe(loss_new)
        if consolidated:
            self.consolidate()
        # The buffer insert and the counters come last: nothing a method runs can fail after them.
        self.buffer.add(xb, yb, stored)
        self.counters.learned(batch, int(n_correct))
        return LearnStats(self.counters.step, loss_new, int(n_correct), batch, replay, False, consolidated,
                          float(step.report.get("penalty", 0.0)), "importance_updated" in step.flags,
                          time.perf_counter() - started, logits=new_logits)

    def _optimizer_step(self) -> None:
        """``theta -= lr * grad`` as one operation on the flat buffers when the optimizer is plain SGD (its
        own step loops over the tensors and costs as much as the arithmetic at micro-batch sizes); the
        optimizer's own step otherwise. Both give the same bits: the same elementwise update."""
        if self._flat_param is not None and self._flat_grad is not None and self.plain_sgd():
            self._flat_param.add_(self._flat_grad, alpha=-self.optimizer.param_groups[0]["lr"])
        else:
            self.optimizer.step()

    def plain_sgd(self) -> bool:
        """True while the optimizer's step is ``theta -= lr * grad`` (SGD, one group, no momentum, weight decay or
        maximize); read each step: a user may change the groups between steps."""
        group = self.optimizer.param_groups[0]
        return (isinstance(self.optimizer, torch.optim.SGD) and len(self.optimizer.param_groups) == 1
                and not group["momentum"] and not group["weight_decay"] and not group["maximize"])

    def _skip(self, rng_state: Tensor | None, standardizer: list[Tensor] | None, loss_new: float, batch: int,
              replay: int, started: float, xb: Tensor, drawn: list[tuple[Any, dict[str, Tensor], Tensor]],
              buffers: list[Tensor] | None = None) -> LearnStats:
        """Count a skipped step; put back the random state its draws consumed, the input statistics and the
        model's buffers, and replace buffered rows that caused it."""
        self.counters.skipped_steps += 1
        self._replace_outliers(xb, drawn)
        if rng_state is not None:
            self.generator.set_state(rng_state)
        if standardizer is not None and self.standardizer is not None:
            with torch.no_grad():
                for dst, src in zip(self.standardizer.buffers(), standardizer, strict=True):
                    dst.copy_(src)
        if buffers is not None:
            with torch.no_grad():
                torch._foreach_copy_(self._model_buffers, buffers)
        return LearnStats(self.counters.step, loss_new, 0, batch, replay, True, False, 0.0, False,
                          time.perf_counter() - started)

    def _replace_outliers(self, xb: Tensor, drawn: list[tuple[Any, dict[str, Tensor], Tensor]]) -> None:
        """Replayed rows far larger than the new rows are what overflowed a step of finite new inputs; left in
        the buffer they would overflow every later step that draws them, so they become copies of other rows."""
        new_max = xb.abs().max()
        if not bool(torch.isfinite(new_max)):
            return  # the new rows themselves are bad: the buffer is not to blame
        for _, fields, slots in drawn:
            if slots.numel() == 0:
                continue
            row_max = fields["x"].abs().amax(1)
            bad = ~(row_max <= new_max * 1e3)  # NaN-safe: a non-finite comparison counts as bad
            if not bool(bad.any()):
                continue
            good = slots[~bad]
            if good.numel() == 0:
                good = torch.tensor([0], device=slots.device) if self.buffer.size > 1 else good
            bad_slots = slots[bad]
            if good.numel() == 0 or bool((bad_slots == good[0]).any()):
                continue
            self.buffer.replace(bad_slots, good[:1].expand_as(bad_slots))
            log.warning("replaced %d buffered sample(s) with inputs far beyond the new ones (max |x| %.3g vs %.3g): "
                        "they made the step overflow", int(bad.sum()), float(row_max.max()), float(new_max))

    def consolidate(self) -> None:
        """Tell every method that the stream settled after a change (the trigger calls this)."""
        self.consolidations += 1
        for m in self.methods:
            if self._transaction is not None:
                self._transaction.before_consolidate(m)
            call(m, "consolidate")

    def observe(self, x: ArrayLike) -> bool:
        """Use unlabeled samples for label-free methods (MAS); returns True if a method used them."""
        xb = self._inputs(x)
        snapshot = Snapshot(self, self._stateful, False)
        self.unlabeled_seen += xb.shape[0]
        if not _all_finite(xb):
            return False
        try:
            used = [call(m, "observe", xb) for m in self.methods]
        except Exception:
            snapshot.restore(self)
            raise
        return any(used)

    # --- inference --------------------------------------------------------------------------------
    def inference_model(self) -> nn.Module:
        """The network that predicts and is exported: the model, or a method's predictor (CLS-ER's stable
        copy), under the nearest-class-mean classifier when ``predict='ncm'`` (the means refreshed from the
        buffer whenever a step changed the model or the buffer)."""
        net = next((p for p in (m.predictor() for m in self.methods) if p is not None), self.model)
        if self.ncm is None or len(self.buffer) == 0:
            return net
        was_training = net.training
        net.eval()
        try:
            n = len(self.buffer)
            self.ncm.refresh(net, self.buffer.x[:n], self.buffer.y[:n].long(), self.buffer.codec.decode,
                             (self.step, self.buffer.seen, id(net)))
        finally:
            net.train(was_training)
        return self.ncm.module(net, self.input_shape)

    def export_model(self) -> nn.Module:
        """The network a snapshot exports: :meth:`inference_model`, or a method's export network built on it (method
        'contexts': every context's head, the router's choice a graph input); it predicts as the learner does."""
        net = self.inference_model()
        for m in self.methods:
            wrapped = call(m, "export_network", net)
            if wrapped is not None:
                net = wrapped
        return net

    @torch.inference_mode()
    def _logits(self, x: ArrayLike) -> Tensor:
        xb = self._inputs(x)
        bad = (~torch.isfinite(xb).all(dim=1)).nonzero().flatten()
        if bad.numel():
            rows = bad[:5].tolist()
            raise ValueError(f"x has NaN or infinite features in row(s) {rows}{' ...' if bad.numel() > 5 else ''}; "
                             "no class can be predicted for them (drop or impute those rows)")
        net = self.inference_model()
        was_training = net.training
        net.eval()
        try:
            return net(xb)
        finally:
            net.train(was_training)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities ``[B, num_classes]`` (float32 numpy); NaN / infinite inputs raise ValueError."""
        return torch.softmax(self._logits(x), dim=1).float().cpu().numpy()

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predicted class ids ``[B]`` (int64 numpy); NaN / infinite inputs raise ValueError."""
        return self._logits(x).argmax(1).cpu().numpy()

    @property
    def prequential_accuracy(self) -> float | None:
        """Test-then-train accuracy over every sample learned so far (None before the first)."""
        return self.correct_learned / self.samples_learned if self.samples_learned else None

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: model, optimizer, buffer, methods, trigger, RNG."""
        self._settle()
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION,
            "config": self.config.model_dump(mode="json"), "model_spec": models.spec_of(self.model),
            "device": str(self.device),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "methods": {m.name: m.state_dict() for m in self.methods},
            "trigger": self.trigger.state_dict() if self.trigger is not None else None,
            "generator": self.generator.get_state(),
            "counters": {"step": self.step, "samples_learned": self.samples_learned,
                         "correct_learned": self.correct_learned, "skipped_steps": self.skipped_steps,
                         "consolidations": self.consolidations, "unlabeled_seen": self.unlabeled_seen},
            "extra": dict(self.extra),
            # standardize=None: whether the first batch turned the standardiser on (None: no batch yet).
            "auto_standardize": self._auto_standardize if self._standardize_decided else None,
            # storage='auto': the codec the first batch chose (None: no batch yet).
            "storage": None if self._storage_pending else {"kind": self.buffer.codec.kind, "lo": self.buffer.codec.lo,
                                                           "hi": self.buffer.codec.hi},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` taken from a learner with the same model and configuration."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError("not an edge_cl learner state (format key missing or wrong)")
        if int(state.get("version", 0)) > STATE_VERSION:
            raise ValueError(f"learner state version {state['version']} is newer than this edge_cl "
                             f"({STATE_VERSION}); upgrade edge_cl")
        self._settle()
        saved_methods = _saved_methods(state)
        mine = [m.name for m in self.methods]
        if sorted(saved_methods) != sorted(mine):
            raise ValueError(f"the saved state is of method {'+'.join(saved_methods) or 'sgd'!r}, this learner "
                             f"runs {self.config.method!r}; load it with the same method")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._load_storage(state.get("storage"))
        self.buffer.load_state_dict(state["buffer"])
        for m in self.methods:
            m.load_state_dict(saved_methods[m.name])
        if self.trigger is not None and state["trigger"] is not None:
            self.trigger.load_state_dict(state["trigger"])
        try:
            self.generator.set_state(state["generator"])
        except RuntimeError:
            # A generator state from another device type cannot be restored: reseed deterministically.
            log.warning("random state saved on %s cannot be restored on %s; reseeding from seed + step",
                        state.get("device"), self.device)
            self.generator.manual_seed(self.config.seed + int(state["counters"]["step"]))
        for key, value in state["counters"].items():
            setattr(self, key, int(value))
        self.extra = dict(state.get("extra") or {})
        decided = state.get("auto_standardize")
        if decided is None and (state.get("config") or {}).get("standardize") is True:
            decided = True  # saved by a learner told to standardise: its statistics are in the state
        self._load_auto_standardize(decided)
        if self.ncm is not None:
            self.ncm.version = None

    def save(self, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
        """Write the whole state atomically (temp file, fsync, rename); ``extra`` is stored alongside."""
        if extra is not None:
            self.extra = dict(extra)
        atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None,
             device: str | torch.device | None = None) -> OnlineLearner:
        """Rebuild a learner saved with :meth:`save` (the model from its spec unless ``model`` is given)."""
        state = safe_load(path)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path} is not an edge_cl learner state")
        if model is None:
            if state["model_spec"] is None:
                raise ValueError(f"{path} was saved from a model without a spec; pass model=<an instance of "
                                 "the same architecture> to OnlineLearner.load")
            model = models.build(state["model_spec"])
        try:
            config = saved_config(dict(state["config"]))
        except ValidationError as exc:
            raise ValueError(f"{path}: its learner configuration is not valid here ({exc.errors()[0]['msg']})") from None
        # The saved device is where it ran, not where it is loaded: "auto" unless the caller says.
        learner = cls.from_config(model, config, device=device if device is not None else "auto")
        learner.load_state_dict(state)
        return learner


# Features this many times larger than the median feature call for the standardiser: 10 catches a stream in
# physical units (temperature ~25, pressure ~1000, vibration ~0.01, rpm ~2000: 19x; the old 1000 did not), and no
# bench stream (pixels, normalised features) reaches it.
SCALE_RATIO = 10.0
# standardize=None on vector inputs: the first finite batch learned decides. Sparse inputs on a bounded scale (at
# least SPARSE_FRACTION of the values exactly 0, all in [-BOUNDED_SCALE, BOUNDED_SCALE]: pixels on a blank
# background, one-hot codes) are left as they are: per-feature standardisation divides a feature that is almost
# always 0 by its tiny spread and blows it up whenever it fires, and the running statistics move whenever the
# images do (validation seeds: split-MNIST -6, permuted -4.6, split Fashion-MNIST -11, gradual rotation -1; rotated
# +0.5). Everything else is standardised: raw units, and dense features even when scaled into [0, 1] (rbf +8,
# agrawal +7, elec2 +3, sea +1). BENCHMARKS.md defaults-validation. A quarter: every batch of 10 of the bench's
# image streams is at least 34% zeros (MNIST rows 59%, Fashion-MNIST rows 9% at the least, 2% of them under a
# quarter), of its tabular streams at most 20% (single agrawal rows reach 33%: 2.5% of them).
BOUNDED_SCALE = 1.0
SPARSE_FRACTION = 0.25
F16_CHECK_ROWS = 256  # rows the standardiser has seen before float16's precision is judged against their spread


def _scale_warning(x: Tensor) -> str | None:
    """What to tell a user whose raw inputs mix scales (one feature ``SCALE_RATIO`` x the median one or more),
    else None: one step size suits no feature then, and weight importance (EWC, MAS ...) of the first layer
    grows with each feature's magnitude."""
    peak = x.abs().amax(0)
    nonzero = peak[peak > 0]
    if nonzero.numel() < 2:
        return None
    top, median = float(nonzero.max()), float(nonzero.median())
    if top < SCALE_RATIO * median:
        return None
    return (f"input features differ in scale by {top / median:.0f}x (feature {int(peak.argmax())} reaches "
            f"{top:.3g}, the median feature {median:.3g}); one step size suits no feature of raw units like these, "
            "and the importance of ewc, mas ... grows with each feature's magnitude. Pass standardize=True to "
            "learn on running-standardised inputs (standardize=None, the default, does so for vector inputs "
            "unless they are sparse values in [-1, 1]), or scale them first")


def _leave_raw(x: Tensor, peak: float) -> bool:
    """standardize=None's decision on the first finite batch ``x`` (largest magnitude ``peak``): True (leave the
    inputs as they are) for sparse inputs on a bounded scale, at least SPARSE_FRACTION of the values exactly 0 and
    all in [-BOUNDED_SCALE, BOUNDED_SCALE] (pixels on a blank background, one-hot codes); False (standardise) for
    everything else: raw units, and dense features however they were scaled."""
    return peak <= BOUNDED_SCALE and float((x == 0).float().mean()) >= SPARSE_FRACTION


def _f16_warning(mean: Tensor, var: Tensor) -> str | None:
    """What to tell a user whose raw-unit features float16 storage blurs (its step near a feature's mean is a
    quarter of the feature's standard deviation or more), else None."""
    std = var.sqrt()
    mag = mean.abs().clamp_min(6.1e-5)
    step = torch.exp2(torch.floor(torch.log2(mag)) - 10)  # float16's spacing at the feature's magnitude
    ratio = torch.where(std > 0, step / std.clamp_min(1e-30), torch.zeros_like(std))
    if float(ratio.max()) < 0.25:
        return None
    k = int(ratio.argmax())
    return (f"storage='float16' (the default buffer storage) keeps about 3 significant digits: input feature {k} "
            f"(mean {float(mean[k]):.6g}, std {float(std[k]):.3g}) is stored in steps of {float(step[k]):.3g}, "
            f"{float(ratio[k]):.2g}x its spread, so replayed samples lose most of what varies in it. Pass "
            "storage='float32' to keep it exact, or subtract its offset before learning")


def _all_finite(t: Tensor) -> bool:
    """True if every element of ``t`` is finite: max |t| is NaN or infinite otherwise (NaN propagates through
    amax). Two kernels and a scalar, where isfinite().all() makes a bool tensor and costs 5-10x more."""
    return t.numel() == 0 or math.isfinite(float(t.abs().amax()))


def _saved_methods(state: dict[str, Any]) -> dict[str, Any]:
    """Each method's saved state; version-1 files kept one importance under "importance"."""
    if "methods" in state:
        return dict(state["methods"])
    out: dict[str, Any] = {}
    cfg = state.get("config", {})
    if int(cfg.get("replay_batch", 0) or 0) > 0:
        out["er"] = {"tensors": []}
    if state.get("importance") is not None:
        out[state["importance"]["name"]] = state["importance"]
    return out or {"sgd": {"tensors": []}}


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - psutil missing or the platform refuses: RSS is informative only
        return 0
