"""Parity gate: onnxruntime on a snapshot must reproduce torch's probabilities on recent inputs (and, for a network
with extra graph inputs, with each value of them the network lists: edge_cl.export.graph)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_cl.export.graph import extras_of, graph_outputs
from edge_cl.export.onnx_export import INPUT_NAME

DEFAULT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ParityResult:
    """Outcome of one parity check; ``reason`` says why it failed (None when ``ok``)."""

    ok: bool
    max_abs_diff: float
    samples: int
    seconds: float
    reason: str | None = None


def check_parity(model: nn.Module, onnx_bytes: bytes, sample_inputs: torch.Tensor | np.ndarray, *,
                 tolerance: float = DEFAULT_TOLERANCE, threads: int = 1) -> ParityResult:
    """Run torch (CPU, eval) and onnxruntime on ``sample_inputs`` ``[k, D]`` at batch 1 and batch k and
    compare probabilities; ``ok`` when every output is finite and max |diff| <= ``tolerance``. Extra graph inputs
    take their defaults, then (batch k) each of their listed values in turn."""
    from edge_cl.runtime import make_session

    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance={tolerance!r} must be a finite number >= 0 (1e-5 for fp32)")
    x = torch.as_tensor(sample_inputs).detach().to("cpu", torch.float32)
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"sample_inputs has shape {tuple(x.shape)}; expected [k, D] with k >= 1 recent inputs")
    start = time.perf_counter()
    reference = copy.deepcopy(model).to("cpu").eval()
    with torch.no_grad():
        expected = torch.softmax(reference(x), dim=-1).numpy()
        # (what is fed besides `input`, torch's probabilities with it): each listed value of each extra input
        variants = [({spec.name: value.numpy()}, torch.softmax(graph_outputs(reference, x, args)[0], -1).numpy())
                    for spec, args, value in _variants(reference)]
    try:
        session = make_session(onnx_bytes, threads=threads)
        batched = session.run(["probabilities"], {INPUT_NAME: x.numpy()})[0]
        # Batch 1 separately: a graph whose batch axis was frozen at export fails here.
        single = session.run(["probabilities"], {INPUT_NAME: x[:1].numpy()})[0]
        fed = [session.run(["probabilities"], {INPUT_NAME: x.numpy(), **feed})[0] for feed, _ in variants]
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        return ParityResult(False, math.inf, int(x.shape[0]), time.perf_counter() - start,
                            f"onnxruntime failed on the snapshot: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    pairs = [(batched, expected, "defaults"), (single, expected[:1], "defaults, batch 1")]
    pairs += [(got, want, ", ".join(f"{k}={v.tolist()}" for k, v in feed.items()))
              for got, (feed, want) in zip(fed, variants, strict=True)]
    diff = 0.0
    for got, want, how in pairs:
        if got.shape != want.shape:
            return ParityResult(False, math.inf, int(x.shape[0]), seconds,
                                f"output shape {got.shape} differs from torch's {want.shape} ({how})")
        if not (np.isfinite(got).all() and np.isfinite(want).all()):
            return ParityResult(False, math.inf, int(x.shape[0]), seconds, f"non-finite probabilities ({how})")
        here = float(np.abs(got - want).max())
        if here > tolerance:
            return ParityResult(False, here, int(x.shape[0]), seconds,
                                f"max |onnxruntime - torch| of probabilities {here:.3g} > tolerance "
                                f"{tolerance:.3g} ({how})")
        diff = max(diff, here)
    return ParityResult(True, diff, int(x.shape[0]), seconds)


def _variants(model: nn.Module) -> list[tuple[Any, tuple[torch.Tensor, ...], torch.Tensor]]:
    """(input spec, every extra input's value, the varied value) for each listed value of each extra input."""
    extras = extras_of(model)
    if extras is None:
        return []
    defaults = [i.default.detach().cpu() for i in extras.inputs]
    out = []
    for n, spec in enumerate(extras.inputs):
        for value in spec.values:
            args = list(defaults)
            args[n] = value.detach().cpu()
            out.append((spec, tuple(args), args[n]))
    return out
