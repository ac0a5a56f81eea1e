"""Peer learners run on the same stream: river's LogisticRegression, HoeffdingAdaptiveTree and ARF.

A peer whose package is missing is reported as skipped, never a crash. deep-river is not offered: its
releases pin torch < 2.6 and river < 0.26, which would replace this project's torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edge_cl.bench import metrics
from edge_cl.bench.schema import empty_result
from edge_cl.bench.streams import PrequentialStream, TaskStream

PEERS = ("logreg", "hat", "arf")


def _factory(name: str) -> Callable[[], Any]:
    from edge_cl.extras import require

    require("river", "bench", f"the {name!r} peer")
    from river import forest, linear_model, optim, preprocessing, tree

    if name == "logreg":
        return lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.1))
    if name == "hat":
        return lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=0)
    if name == "arf":
        return lambda: forest.ARFClassifier(seed=0)
    raise ValueError(f"peer {name!r} is unknown; use one of {PEERS}")


def run_peer(name: str, stream: PrequentialStream, max_samples: int | None = None) -> dict[str, Any]:
    """Prequential run of one river model (test-then-train on every sample)."""
    try:
        model = _factory(name)()
    except ImportError as exc:
        return empty_result(name, note=f"skipped: not installed ({exc.name})")
    n = len(stream) if max_samples is None else min(len(stream), max_samples)
    cols = stream.feature_names or tuple(str(i) for i in range(stream.input_dim))
    correct = np.zeros(n, dtype=bool)
    lat: list[float] = []
    clock = time.perf_counter
    for i in range(n):
        xd = dict(zip(cols, stream.x[i].tolist()))
        yi = int(stream.y[i])
        t0 = clock()
        correct[i] = model.predict_one(xd) == yi
        model.learn_one(xd, yi)
        lat.append(clock() - t0)
    res = empty_result(name, note=(f"subsampled: first {n} of {len(stream)} samples" if n < len(stream) else None))
    res.update(metrics.latency_summary(lat))
    window = max(1, n // 100)  # the same resolution the plots use for methods
    res.update({"prequential_acc": metrics.prequential_accuracy(correct), "samples": n,
                "stream_accuracy": {"window": window, "values": metrics.windowed_accuracy(correct, window).tolist()
                                    if n else []},
                "samples_per_s": n / sum(lat) if lat else None})
    return res


def run_peers(names: list[str], stream: TaskStream | PrequentialStream, seed: int = 0,
              max_samples: int | None = None) -> dict[str, Any]:
    """Every named peer on ``stream``; image task streams are skipped (river learns one dict at a time)."""
    out: dict[str, Any] = {}
    for name in names:
        if name not in PEERS:
            raise ValueError(f"peer {name!r} is unknown; use a comma list of {', '.join(PEERS)}")
        if isinstance(stream, TaskStream):
            out[name] = empty_result(name, note="skipped: river peers run on prequential streams only "
                                               "(784-pixel dicts one at a time are too slow for MNIST tasks)")
            continue
        out[name] = run_peer(name, stream, max_samples)
    return out
