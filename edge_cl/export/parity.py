"""Parity gate: onnxruntime on a snapshot must reproduce torch's probabilities on recent inputs."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

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
    compare probabilities; ``ok`` when every output is finite and max |diff| <= ``tolerance``."""
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
    try:
        session = make_session(onnx_bytes, threads=threads)
        batched = session.run(["probabilities"], {INPUT_NAME: x.numpy()})[0]
        # Batch 1 separately: a graph whose batch axis was frozen at export fails here.
        single = session.run(["probabilities"], {INPUT_NAME: x[:1].numpy()})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        return ParityResult(False, math.inf, int(x.shape[0]), time.perf_counter() - start,
                            f"onnxruntime failed on the snapshot: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    if batched.shape != expected.shape or single.shape != expected[:1].shape:
        return ParityResult(False, math.inf, int(x.shape[0]), seconds,
                            f"output shape {batched.shape} / {single.shape} differs from torch's {expected.shape}")
    if not (np.isfinite(batched).all() and np.isfinite(single).all() and np.isfinite(expected).all()):
        return ParityResult(False, math.inf, int(x.shape[0]), seconds, "non-finite probabilities")
    diff = float(max(np.abs(batched - expected).max(), np.abs(single - expected[:1]).max()))
    if diff > tolerance:
        return ParityResult(False, diff, int(x.shape[0]), seconds,
                            f"max |onnxruntime - torch| of probabilities {diff:.3g} > tolerance {tolerance:.3g}")
    return ParityResult(True, diff, int(x.shape[0]), seconds)
