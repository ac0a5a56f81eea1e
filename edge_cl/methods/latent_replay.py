"""Latent replay: the buffer keeps the output of a frozen lower part of the network instead of raw inputs.

The leading ``latent_layers`` Linear layers (with their activations) learn with the rest for the first
``latent_warmup`` samples, then freeze for good; from then on each new sample's activation at the top of that lower
part (with its label) enters a reservoir of ``latent_samples`` rows, and each step replays ``latent_batch`` of them
through the upper part only, in a cross-entropy term of weight ``latent_weight`` (Pellegrini et al. 2020's latent
replay, task-free). A hidden layer narrower than the input makes a row cheaper than a stored input (100 float16
numbers against 784 bytes of an MNIST image), so more rows fit in the same bytes; and, like 'gen-replay', no raw
sensor data is kept on the device (only activations of the frozen part).

The price: the lower part stops adapting after the warm-up, so a stream whose inputs change beyond what its features
capture is learned by the upper layers alone; and the replayed rows pass through fewer layers.

Bytes (counted in the budget under the method's name; the learner keeps no buffer for it): ``latent_samples x
hidden`` stored numbers (``latent_dtype``) and a 16-bit label per row; with an optimizer other than plain SGD also a
copy of the lower part (momentum or weight decay would otherwise move frozen weights; it restores them after every
update). Models: a chain of nn.Linear layers with elementwise activations (edge_cl.models.mlp); others are refused
with what to use.

Where it stands (BENCHMARKS.md ``latent-replay-*``, ``benchmarks/latent_replay.sh``; warm-up and replay batch chosen
on validation seed 100, figures on seeds 0-2, er and der++ at its bytes): it does not measure well. On split-mnist it
trails er by 2.2 points of ACC (82.94 against 85.16; der++ 89.86); on gradual rotation, where the frozen layer cannot
follow the rotating inputs, by 11.5 (60.12 against 71.58) and by 15.3 in prequential accuracy. Every warm-up tried
(1,000 to 12,000 samples), a larger replay batch and twice the rows trailed er on validation. For a device
that must keep no raw data, 'gen-replay' measures better.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from edge_cl.methods.base import Method, MethodContext, MethodSettings, Step
from edge_cl.methods.pnn import chain_of
from edge_cl.methods.registry import register
from edge_cl.standardizer import Standardized


class LatentReplaySettings(MethodSettings):
    """Latent replay's settings."""

    latent_layers: int = Field(1, ge=1, le=64, description="Leading Linear layers (with their activations) frozen "
                               "after the warm-up; the buffer keeps their output. At least one layer must stay above.")
    latent_warmup: int = Field(1000, ge=0, description="Samples learned by the whole network before the lower part "
                               "freezes and latent rows start to be kept.")
    latent_samples: int = Field(1000, ge=1, le=10_000_000, description="Latent rows kept (a reservoir over the "
                                "samples seen since the freeze).")
    latent_batch: int = Field(10, ge=0, le=65536, description="Latent rows replayed per step.")
    latent_weight: float = Field(1.0, ge=0, description="Weight of the cross-entropy on replayed latent rows.")
    latent_dtype: Literal["float16", "float32"] = Field("float16", description="How latent rows are stored.")


@register
class LatentReplay(Method):
    """Replay of frozen lower-layer activations (see the module docstring)."""

    name: ClassVar[str] = "latent-replay"
    Settings: ClassVar[type[MethodSettings]] = LatentReplaySettings
    fixed_shape = False  # it freezes weights between backward and update, on the host

    def __init__(self, ctx: MethodContext, settings: MethodSettings) -> None:
        super().__init__(ctx, settings)
        if not isinstance(settings, LatentReplaySettings):
            raise TypeError(f"{type(self).__name__} needs LatentReplaySettings, got {type(settings).__name__}")
        self.layers, self.acts = chain_of(ctx.model, self.name, "Use er or der++ for other models")
        self.depth = int(settings.latent_layers)
        if self.depth >= len(self.layers):
            raise ValueError(f"latent_layers={self.depth}, but the model has {len(self.layers)} Linear layers: at "
                             f"least one must stay above the frozen part; set latent_layers to at most "
                             f"{len(self.layers) - 1}")
        self.warmup = int(settings.latent_warmup)
        self.batch = int(settings.latent_batch)
        self.weight = float(settings.latent_weight)
        width = self.layers[self.depth].in_features
        dev = ctx.device
        self.latents = torch.zeros(settings.latent_samples, width, device=dev,
                                   dtype=torch.float16 if settings.latent_dtype == "float16" else torch.float32)
        self.labels = torch.zeros(settings.latent_samples, dtype=torch.int16, device=dev)
        # seen: samples learned; since: samples offered to the reservoir since the freeze (both int64, saved).
        self.counters = torch.zeros(2, dtype=torch.int64)
        self.lower = [p for lay in self.layers[:self.depth] for p in lay.parameters()]
        # Momentum or weight decay move weights whose gradient is zero: their values are put back after each update.
        self.copy = [] if ctx.plain_sgd else [p.detach().clone() for p in self.lower]

    @property
    def frozen(self) -> bool:
        """Whether the lower part has stopped learning (the warm-up is over)."""
        return int(self.counters[0]) >= self.warmup

    @property
    def stored(self) -> int:
        """Latent rows held."""
        return min(int(self.counters[1]), self.latents.shape[0])

    def tensors(self) -> list[Tensor]:
        return [self.latents, self.labels, self.counters, *self.copy]

    # --- the step -----------------------------------------------------------------------------------
    def loss(self, step: Step) -> Tensor | None:
        n = self.stored
        if not self.frozen or n == 0 or self.batch == 0 or self.weight == 0:
            return None
        gen = self.ctx.generator
        idx = torch.randint(0, n, (self.batch,), generator=gen, device=gen.device).to(self.latents.device)
        h = self.latents.index_select(0, idx).float()
        out = self._upper(h)
        term = F.cross_entropy(out, self.labels.index_select(0, idx).long())
        return term if self.weight == 1.0 else self.weight * term

    def before_update(self, step: Step) -> None:
        if self.frozen:
            for p in self.lower:
                if p.grad is not None:
                    p.grad.zero_()

    def after_update(self, step: Step) -> None:
        if self.frozen:
            with torch.no_grad():
                for p, kept in zip(self.lower, self.copy, strict=False):
                    p.copy_(kept)
            self._keep(step.x.detach(), step.y)
        self.counters[0] += step.batch
        if self.frozen and self.copy and int(self.counters[0]) - step.batch < self.warmup:
            with torch.no_grad():  # the update that ended the warm-up was the last one: these values are frozen
                for p, kept in zip(self.lower, self.copy, strict=True):
                    kept.copy_(p)

    # --- the latent rows ----------------------------------------------------------------------------
    @torch.no_grad()
    def latent(self, x: Tensor) -> Tensor:
        """The frozen part's output for raw inputs ``x`` (standardised as the model's forward does)."""
        model = self.ctx.model
        h = model.standardizer(x) if isinstance(model, Standardized) else x
        for lay, act in zip(self.layers[:self.depth], self.acts[:self.depth], strict=True):
            h = act(lay(h))
        return h

    def _upper(self, h: Tensor) -> Tensor:
        """The logits of the layers above the frozen part on latent rows ``h``."""
        last = len(self.layers) - 1
        for i in range(self.depth, last + 1):
            h = self.layers[i](h)
            if i < last:
                h = self.acts[i](h)
        return h

    def _keep(self, x: Tensor, y: Tensor) -> None:
        """Offer the step's new rows to the reservoir (non-finite rows left out)."""
        h = self.latent(x)
        big = torch.finfo(self.latents.dtype).max
        ok = torch.isfinite(h).all(1)
        cap = self.latents.shape[0]
        gen = self.ctx.generator
        for i in torch.nonzero(ok).flatten().tolist():
            seen = int(self.counters[1])
            slot = seen if seen < cap else int(torch.randint(0, seen + 1, (1,), generator=gen, device=gen.device))
            if slot < cap:
                self.latents[slot] = h[i].clamp(-big, big).to(self.latents.dtype)
                self.labels[slot] = int(y[i])
            self.counters[1] += 1

    def report(self) -> dict[str, Any]:
        return {"latent_rows": self.stored, "frozen": self.frozen}
