"""The fleet's arithmetic, free of any transport: the sample-weighted average of the devices' weights (what the
ServerApp's FedAvg computes) and a device's merge ``w = a * w_global + (1 - a) * w_local``.

The ServerApp and ``benchmarks/fleet.py`` both call these, so the benchmark measures the aggregation the Flower
apps run. Pure numpy: no ``flwr`` import, no learner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Arrays = Mapping[str, np.ndarray]


def sample_weighted_average(models: Sequence[Arrays], samples: Sequence[float]) -> dict[str, np.ndarray] | None:
    """FedAvg: the average of ``models`` weighted by the samples each learned since its last merge.

    None when no device learned a sample (the caller keeps its current global model). Raises ValueError when the
    models do not share names and shapes, or a sample count is negative.
    """
    if len(models) != len(samples):
        raise ValueError(f"{len(models)} models but {len(samples)} sample counts; give one count per model")
    if any(s < 0 for s in samples):
        raise ValueError(f"sample counts {list(samples)} must be >= 0 (samples learned since the last merge)")
    total = float(sum(samples))
    if not models or total <= 0:
        return None
    first = models[0]
    for i, m in enumerate(models[1:], start=1):
        if set(m) != set(first) or any(np.shape(m[k]) != np.shape(first[k]) for k in first):
            raise ValueError(f"model {i} does not have model 0's parameter names and shapes; every device of a "
                             "fleet must run the same model")
    out: dict[str, np.ndarray] = {}
    # Same order of operations as Flower's aggregate_arrayrecords (weight factors first, then accumulate), so
    # the result is bit-for-bit what the ServerApp's FedAvg computes.
    for model, s in zip(models, samples, strict=True):
        factor = float(s) / total
        for name, value in model.items():
            if name not in out:
                out[name] = np.asarray(value) * factor
            else:
                out[name] += np.asarray(value) * factor
    return out


def blend(global_arrays: Arrays, local_arrays: Arrays, a: float) -> dict[str, np.ndarray]:
    """``a * w_global + (1 - a) * w_local`` per parameter, float32 (``a`` = 1: take the global model)."""
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"merge weight a={a!r} must be in [0, 1] (1: take the global model, 0: keep the local one)")
    if set(global_arrays) != set(local_arrays):
        raise ValueError("the global and local models do not have the same parameter names")
    return {name: (a * np.asarray(global_arrays[name], dtype=np.float32)
                   + (1.0 - a) * np.asarray(local_arrays[name], dtype=np.float32)).astype(np.float32)
            for name in local_arrays}


def server_step(previous: Arrays | None, average: Arrays, server_lr: float) -> dict[str, np.ndarray]:
    """The server's SGD step on the round's pseudo-gradient (FedOpt; Flower's FedAvgM without momentum):
    ``previous + server_lr * (average - previous)``. The average itself on the first round (no previous global
    model) or with ``server_lr`` = 1 (plain FedAvg).

    Why > 1 helps: devices that step side by side and are averaged every K steps move the shared model by one
    averaged update, where one learner fed the same samples in turn takes N updates; the server rate scales the
    averaged update back up (the linear scaling rule of large-batch SGD).
    """
    if not 0.0 < server_lr <= 16.0:
        raise ValueError(f"server learning rate {server_lr!r} must be in (0, 16] (1: plain FedAvg)")
    if previous is None or server_lr == 1.0:
        return {name: np.asarray(value, dtype=np.float32) for name, value in average.items()}
    if set(previous) != set(average) or any(np.shape(previous[k]) != np.shape(average[k]) for k in average):
        raise ValueError("the previous global model and this round's average do not have the same parameter names "
                         "and shapes; every device of a fleet must run the same model")
    return {name: (np.asarray(previous[name], dtype=np.float32)
                   + np.float32(server_lr) * (np.asarray(average[name], dtype=np.float32)
                                              - np.asarray(previous[name], dtype=np.float32))).astype(np.float32)
            for name in average}
