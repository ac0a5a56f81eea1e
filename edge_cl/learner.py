"""OnlineLearner: one task-free online update step with replay and an importance penalty."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_cl import importance as importance_registry
from edge_cl import models
from edge_cl.budget import MemoryBudget, tensor_bytes
from edge_cl.buffer import ReservoirBuffer
from edge_cl.devices import resolve_device
from edge_cl.state import atomic_save, safe_load
from edge_cl.storage import Codec
from edge_cl.triggers import make_trigger

log = logging.getLogger("edge_cl")

STATE_FORMAT = "edge_cl.learner"
STATE_VERSION = 1
OPTIMIZERS = ("sgd", "adam")

ArrayLike = np.ndarray | Tensor | list


@dataclass(frozen=True)
class LearnStats:
    """What one :meth:`OnlineLearner.learn` step did."""

    step: int               # optimizer steps taken so far (after this one)
    loss: float             # cross-entropy on the new micro-batch, before the update
    new_correct: int        # new samples predicted right before the update (test-then-train)
    batch_size: int
    replay_size: int
    skipped: bool           # True: non-finite loss, nothing was changed
    consolidated: bool      # the trigger fired and importance was consolidated
    penalty: float          # importance penalty value, refreshed every importance_every steps
    importance_updated: bool
    seconds: float          # wall time of the step


@dataclass(frozen=True)
class LearnerConfig:
    """Every constructor argument except the model and device: what a saved state needs to rebuild."""

    budget_bytes: int
    importance: str | None = "mas"
    replay_batch: int = 10
    lr: float = 0.1
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.0
    importance_lambda: float | None = None
    importance_gamma: float = 0.9
    importance_every: int = 10
    importance_samples: int = 10
    trigger: str | None = "plateau"
    trigger_params: dict[str, Any] | None = None
    storage: str = "float32"
    input_range: tuple[float, float] | None = None
    class_balanced: bool = False
    max_buffer_samples: int | None = None
    input_dim: int | None = None

    def validate(self) -> None:
        if self.replay_batch < 0:
            raise ValueError(f"replay_batch must be >= 0 (0 turns replay off), got {self.replay_batch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is unknown; use one of {OPTIMIZERS}")
        if self.importance_every <= 0:
            raise ValueError(f"importance_every must be >= 1 step, got {self.importance_every}")
        if self.storage == "uint8" and self.input_range is None:
            raise ValueError("storage='uint8' needs input_range=(lo, hi), the range the inputs are quantised over")


def _make_optimizer(cfg: LearnerConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def _optimizer_state_bytes(cfg: LearnerConfig, model: nn.Module) -> int:
    """Bytes the optimizer's state will take, measured by one step on throwaway copies."""
    params = [nn.Parameter(torch.zeros_like(p)) for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = _make_optimizer(cfg, params)
    opt.step()
    return tensor_bytes(t for s in opt.state.values() for t in s.values() if isinstance(t, Tensor))


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


def _plan(model: nn.Module, cfg: LearnerConfig, input_dim: int) -> tuple[dict[str, int], int, Codec]:
    """Fixed bytes by part and bytes per buffered sample for this model and configuration."""
    param_bytes = sum(p.nbytes for p in model.parameters()) + sum(b.nbytes for b in model.buffers())
    grad_bytes = sum(p.nbytes for p in model.parameters() if p.requires_grad)
    imp_bytes = importance_registry.Importance.reserved_bytes(model) if cfg.importance else 0
    fixed = {"parameters": param_bytes, "gradients": grad_bytes,
             "optimizer": _optimizer_state_bytes(cfg, model), "importance": imp_bytes, "scratch": 0}
    lo, hi = cfg.input_range if cfg.input_range is not None else (0.0, 1.0)
    codec = Codec(cfg.storage, float(lo), float(hi))
    return fixed, ReservoirBuffer.bytes_per_sample(input_dim, codec), codec


class OnlineLearner:
    """Task-free online continual learner: replay + online EWC/MAS inside ``budget_bytes``.

    Each :meth:`learn` call is one optimizer step on the new micro-batch plus a replay batch; no task
    ids are ever needed. ``replay_batch=0`` and ``importance=None`` give plain online fine-tuning.
    """

    def __init__(self, model: nn.Module, budget_bytes: int, importance: str | None = "mas",
                 replay_batch: int = 10, lr: float = 0.1, device: str | torch.device = "auto", seed: int = 0,
                 **options: Any) -> None:
        try:
            cfg = LearnerConfig(budget_bytes=budget_bytes, importance=importance, replay_batch=replay_batch,
                                lr=lr, seed=seed, **options)
        except TypeError as exc:
            known = sorted(LearnerConfig.__dataclass_fields__)
            raise ValueError(f"{exc}; OnlineLearner options are {known}") from None
        cfg.validate()
        if cfg.importance is not None:
            importance_registry.get(cfg.importance)
        self.config = cfg
        self.device = resolve_device(device)
        log.info("edge_cl learner on %s", self.device)
        self.model = model.to(self.device)
        self.input_dim, self.num_classes = _infer_io(self.model, self.device, cfg.input_dim)
        self.input_shape: tuple[int, ...] = tuple(getattr(model, "input_shape", (self.input_dim,)))

        fixed, per_sample, codec = _plan(self.model, cfg, self.input_dim)
        self.budget = MemoryBudget(cfg.budget_bytes, fixed, per_sample,
                                   min_buffer_samples=cfg.replay_batch,
                                   max_buffer_samples=cfg.max_buffer_samples if cfg.replay_batch else 0)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.buffer = ReservoirBuffer(self.budget.buffer_capacity, self.input_dim, device=self.device,
                                      codec=codec, class_balanced=cfg.class_balanced, generator=self.generator)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        for p in self.params:  # gradients live for the learner's lifetime, so they are counted once
            p.grad = torch.zeros_like(p)
        self._grads: list[Tensor] = [p.grad for p in self.params if p.grad is not None]
        self.optimizer = _make_optimizer(cfg, self.params)
        self.importance = None
        if cfg.importance is not None:
            lam = cfg.importance_lambda
            if lam is None:
                lam = importance_registry.DEFAULT_LAMBDA[cfg.importance]
            # Plain SGD on lambda * omega * d^2 diverges once 2 * lr * lambda * omega > 2: cap omega at the
            # no-overshoot point. Adam rescales steps, so it needs no cap.
            max_omega = 1.0 / (2.0 * cfg.lr * lam) if cfg.optimizer == "sgd" and lam > 0 else None
            self.importance = importance_registry.get(cfg.importance)(
                self.model, lam=lam, gamma=cfg.importance_gamma, samples=cfg.importance_samples,
                generator=self.generator, max_omega=max_omega)
        self.trigger = make_trigger(cfg.trigger, **(cfg.trigger_params or {}))
        self.step = 0
        self.samples_learned = 0
        self.correct_learned = 0
        self.skipped_steps = 0
        self.consolidations = 0
        self.unlabeled_seen = 0
        self._penalty = 0.0
        self.extra: dict[str, Any] = {}

    # --- budget -----------------------------------------------------------------------------------
    @classmethod
    def required_bytes(cls, model: nn.Module, buffer_samples: int, importance: str | None = "mas",
                       replay_batch: int = 10, **options: Any) -> int:
        """The ``budget_bytes`` that gives exactly ``buffer_samples`` of replay buffer for this setup."""
        cfg = LearnerConfig(budget_bytes=1, importance=importance, replay_batch=replay_batch, **options)
        device = next(model.parameters()).device
        dim, _ = _infer_io(model, device, cfg.input_dim)
        fixed, per_sample, _ = _plan(model, cfg, dim)
        return MemoryBudget.required(fixed, per_sample, buffer_samples if replay_batch else 0)

    def owned_tensors(self) -> dict[str, list[Tensor]]:
        """Every tensor the learner owns, by budget part."""
        opt_state = [t for s in self.optimizer.state.values() for t in s.values() if isinstance(t, Tensor)]
        return {
            "parameters": [*self.model.parameters(), *self.model.buffers()],
            "gradients": [p.grad for p in self.params if p.grad is not None],
            "optimizer": opt_state,
            "importance": self.importance.tensors() if self.importance is not None else [],
            "buffer": self.buffer.tensors(),
            "scratch": [],
        }

    def memory_report(self) -> dict[str, Any]:
        """Every byte of learner state by part against the budget, plus process RSS beside it."""
        report = self.budget.report(self.owned_tensors(), len(self.buffer))
        report.update({
            "device": str(self.device),
            "buffer_fill_ratio": len(self.buffer) / self.budget.buffer_capacity if self.budget.buffer_capacity else 0.0,
            # Transient, freed after each importance estimate; not learner state, so not in used_bytes.
            "step_workspace_bytes": self.importance.workspace_bytes() if self.importance is not None else 0,
            "importance_updates": self.importance.updates if self.importance is not None else 0,
            "importance_seconds": self.importance.seconds if self.importance is not None else 0.0,
            "process_rss_bytes": _rss_bytes(),
        })
        return report

    # --- inputs -----------------------------------------------------------------------------------
    def _inputs(self, x: ArrayLike) -> Tensor:
        t = torch.as_tensor(x)
        if t.ndim < 2:
            raise ValueError(f"x must be a batch [B, {self.input_dim}] (or [B, *{self.input_shape}]); got shape "
                             f"{tuple(t.shape)}. For one sample pass x[None]")
        t = t.reshape(t.shape[0], -1)
        if t.shape[1] != self.input_dim:
            raise ValueError(f"x has {t.shape[1]} features per sample, the model takes {self.input_dim}")
        return t.to(device=self.device, dtype=torch.float32, non_blocking=True)

    def _labels(self, y: ArrayLike, batch: int) -> Tensor:
        t = torch.as_tensor(y)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"y must hold integer class ids, got dtype {t.dtype}")
        t = t.reshape(-1)
        if t.shape[0] != batch:
            raise ValueError(f"y has {t.shape[0]} labels for {batch} samples")
        if batch:
            lo, hi = (int(y.min()), int(y.max())) if isinstance(y, np.ndarray) else (int(t.min()), int(t.max()))
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(f"labels must be in [0, {self.num_classes}); got min {lo}, max {hi}")
        return t.to(device=self.device, dtype=torch.int64, non_blocking=True)

    # --- the step ---------------------------------------------------------------------------------
    def learn(self, x: ArrayLike, y: ArrayLike) -> LearnStats:
        """One online step: new micro-batch + replay batch, loss + penalty, one optimizer step, then
        buffer insert, importance update and trigger. A non-finite loss skips the step entirely."""
        started = time.perf_counter()
        xb = self._inputs(x)
        yb = self._labels(y, xb.shape[0])
        batch = xb.shape[0]
        if batch == 0:
            raise ValueError("learn() needs at least one sample")
        rx, ry = self.buffer.sample(self.config.replay_batch)
        replay = rx.shape[0]
        xs, ys = (torch.cat([xb, rx]), torch.cat([yb, ry])) if replay else (xb, yb)

        if not self.model.training:
            self.model.train()
        logits = self.model(xs)
        losses = F.cross_entropy(logits, ys, reduction="none")
        loss = losses.mean()
        correct = (logits[:batch].detach().argmax(1) == yb).sum(dtype=losses.dtype)
        # One device-to-host transfer per step: every per-sample loss and the hit count.
        values = torch.cat([losses.detach(), correct.unsqueeze(0)]).tolist()
        n_correct = values.pop()
        loss_new = sum(values[:batch]) / batch
        if not all(math.isfinite(v) for v in values):
            self.skipped_steps += 1
            return LearnStats(self.step, loss_new, 0, batch, replay, True, False, 0.0, False,
                              time.perf_counter() - started)

        torch._foreach_zero_(self._grads)  # gradients stay allocated: they are counted in the budget
        loss.backward()
        if self.importance is not None and self.importance.active:
            # The value is only reported, so it is refreshed on importance steps, not every step.
            value = self.importance.add_penalty_grad_(with_value=(self.step + 1) % self.config.importance_every == 0)
            if value is not None:
                self._penalty = float(value)
        self.optimizer.step()
        self.step += 1
        self.samples_learned += batch
        self.correct_learned += int(n_correct)

        self.buffer.add(xb, yb)
        updated = False
        if self.importance is not None and self.step % self.config.importance_every == 0:
            self.importance.update(xb, yb)
            updated = True
        consolidated = self.trigger is not None and self.trigger.observe(loss_new)
        if consolidated:
            self.consolidate()
        return LearnStats(self.step, loss_new, int(n_correct), batch, replay, False, consolidated, self._penalty,
                          updated, time.perf_counter() - started)

    def consolidate(self) -> None:
        """Fold the running importance into the consolidated one and move the anchor (the trigger calls this)."""
        self.consolidations += 1
        if self.importance is not None:
            self.importance.consolidate()

    def observe(self, x: ArrayLike) -> bool:
        """Use unlabeled samples for label-free importance (MAS); returns True if importance was updated."""
        xb = self._inputs(x)
        self.unlabeled_seen += xb.shape[0]
        if self.importance is None or self.importance.needs_labels or xb.shape[0] == 0:
            return False
        if not bool(torch.isfinite(xb).all()):
            return False
        self.importance.update(xb, None)
        return True

    # --- inference --------------------------------------------------------------------------------
    @torch.inference_mode()
    def _logits(self, x: ArrayLike) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(self._inputs(x))
        finally:
            self.model.train(was_training)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities ``[B, num_classes]`` (float32 numpy)."""
        return torch.softmax(self._logits(x), dim=1).float().cpu().numpy()

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predicted class ids ``[B]`` (int64 numpy)."""
        return self._logits(x).argmax(1).cpu().numpy()

    @property
    def prequential_accuracy(self) -> float | None:
        """Test-then-train accuracy over every sample learned so far (None before the first)."""
        return self.correct_learned / self.samples_learned if self.samples_learned else None

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: model, optimizer, buffer, importance, trigger, RNG."""
        cfg = asdict(self.config)
        if cfg["input_range"] is not None:
            cfg["input_range"] = list(cfg["input_range"])
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION,
            "config": cfg, "model_spec": models.spec_of(self.model), "device": str(self.device),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "importance": self.importance.state_dict() if self.importance is not None else None,
            "trigger": self.trigger.state_dict() if self.trigger is not None else None,
            "generator": self.generator.get_state(),
            "counters": {"step": self.step, "samples_learned": self.samples_learned,
                         "correct_learned": self.correct_learned, "skipped_steps": self.skipped_steps,
                         "consolidations": self.consolidations, "unlabeled_seen": self.unlabeled_seen},
            "extra": dict(self.extra),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` taken from a learner with the same model and configuration."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError("not an edge_cl learner state (format key missing or wrong)")
        if int(state.get("version", 0)) > STATE_VERSION:
            raise ValueError(f"learner state version {state['version']} is newer than this edge_cl "
                             f"({STATE_VERSION}); upgrade edge_cl")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        if self.importance is not None and state["importance"] is not None:
            self.importance.load_state_dict(state["importance"])
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
        cfg = dict(state["config"])
        if cfg.get("input_range") is not None:
            cfg["input_range"] = tuple(cfg["input_range"])
        learner = cls(model, device=device if device is not None else "auto", **cfg)
        learner.load_state_dict(state)
        return learner


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - psutil missing or the platform refuses: RSS is informative only
        return 0
