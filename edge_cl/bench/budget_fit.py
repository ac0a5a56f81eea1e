"""Budget fit: does the configured learner fit a device's update-latency and memory budgets?

It runs the learner from the daemon's config on a synthetic stream of the configured input shape and times, per
batch, the ``predict`` call a client waits for and the ``learn`` step, in ``k`` repeats. The latency verdict uses
the upper end of a bootstrap interval of learn p99 (:mod:`edge_cl.bench.fit_stats`); it also compares the
learner's state bytes with ``budget_bytes`` and peak RSS with ``rss_budget_mb``. :mod:`edge_cl.bench.fit_sweep`
searches replay batch and buffer sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from edge_cl.bench import fit_stats
from edge_cl.bench.runner import build_model, peak_rss_mb

Clock = Callable[[], float]


@dataclass
class FitConfig:
    """What the fit needs from the config: model spec, the learner's configuration, step size and the budgets."""

    model: dict[str, Any]
    learner: dict[str, Any]     # LearnerConfig fields: OnlineLearner(model, **learner) builds it
    batch: int
    latency_budget_ms: float
    rss_budget_mb: float | None = None
    source: str = ""
    repeats: int = fit_stats.DEFAULT_REPEATS
    confidence: float = fit_stats.DEFAULT_CONFIDENCE
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timings:
    """One configuration's measurement: seconds per step, one list per repeat, and the learner's memory report."""

    learn_s: list[list[float]]
    predict_s: list[list[float]]
    memory: dict[str, Any]
    device: str = "cpu"


# What the fit calls to time one learner configuration (learner kwargs -> Timings); tests pass a cost model.
Measure = Callable[[dict[str, Any]], Timings]


def load_fit_config(path: str | Path, latency_budget_ms: float | None = None, rss_budget_mb: float | None = None,
                    batch: int | None = None, repeats: int = fit_stats.DEFAULT_REPEATS,
                    confidence: float = fit_stats.DEFAULT_CONFIDENCE) -> FitConfig:
    """Read the daemon's TOML with ``edge_cl.config.load_config`` (the same schema the daemon reads).

    Its ``[bench]`` table may hold ``latency_budget_ms``, ``rss_budget_mb`` and ``batch`` (new samples per step;
    default ``learner.max_batch``, the daemon's largest step); the arguments, given, override it.
    """
    from edge_cl.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    lat = latency_budget_ms if latency_budget_ms is not None else cfg.bench.latency_budget_ms
    if lat is None:
        raise ValueError("bench.latency_budget_ms is missing: add `[bench] latency_budget_ms = 5.0` to the config "
                         "or pass --latency-budget-ms")
    if not lat > 0:
        raise ValueError(f"bench.latency_budget_ms={lat!r} must be a positive number of milliseconds")
    rss = rss_budget_mb if rss_budget_mb is not None else cfg.bench.rss_budget_mb
    if rss is not None and not rss > 0:
        raise ValueError(f"--rss-budget-mb {rss!r} must be a positive number of MiB")
    step = batch if batch is not None else (cfg.bench.batch or cfg.learner.max_batch)
    if step < 1:
        raise ValueError(f"--batch {step} must be >= 1 new sample per step")
    fit_stats.check_settings(repeats, confidence)
    learner = cfg.learner.learner_config(cfg.vector_input).model_dump()
    return FitConfig(model=dict(cfg.model), learner=learner, batch=int(step), latency_budget_ms=float(lat),
                     rss_budget_mb=None if rss is None else float(rss), source=str(path), repeats=repeats,
                     confidence=confidence)


def _synthetic(model: Any, n: int, lo: float, hi: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n, int(model.input_dim)), generator=gen) * (hi - lo) + lo
    y = torch.randint(int(model.num_classes), (n,), generator=gen)
    return x, y


def time_learner(model_spec: dict[str, Any], learner_kwargs: dict[str, Any], batch: int, steps: int,
                 repeats: int = 1, seed: int = 0, clock: Clock = time.perf_counter) -> Timings:
    """Build the learner, fill its buffer, then time ``repeats`` blocks of ``steps`` (predict, learn) pairs.

    Each step times ``predict`` on the new batch (what a client waits for) and then ``learn`` on it, as the
    daemon does (predict on arrival, learn once labelled). Raises ValueError if the learner cannot exist.
    """
    from edge_cl.learner import OnlineLearner

    model = build_model(model_spec, seed)
    kw = dict(learner_kwargs)
    learner = OnlineLearner(model, **kw)
    lo, hi = kw.get("input_range") or (0.0, 1.0)
    cap = learner.memory_report()["buffer_capacity"]
    # Warm-up: fill the buffer (capped) and pass a few importance updates so the timed steps are steady state.
    every = max((int(getattr(m, "every", 1)) for m in learner.methods), default=1)
    warm = max(20, min(cap, 20_000) // batch + 1, 3 * every)
    total = warm + steps * repeats
    x, y = _synthetic(model, total * batch, float(lo), float(hi), seed)
    for i in range(warm):
        learner.learn(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
    learn_s: list[list[float]] = []
    predict_s: list[list[float]] = []
    for r in range(repeats):
        block_l, block_p = [], []
        for i in range(warm + r * steps, warm + (r + 1) * steps):
            xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
            t0 = clock()
            learner.predict(xb)
            t1 = clock()
            learner.learn(xb, yb)
            t2 = clock()
            block_p.append(t1 - t0)
            block_l.append(t2 - t1)
        learn_s.append(block_l)
        predict_s.append(block_p)
    return Timings(learn_s, predict_s, learner.memory_report(), str(learner.device))


def default_measure(fit: FitConfig, steps: int, clock: Clock = time.perf_counter) -> Measure:
    """The real measurement for ``fit``: :func:`time_learner` with its model, batch, steps and repeats."""
    return partial(_measure_kwargs, fit.model, fit.batch, steps, fit.repeats, clock)


def _measure_kwargs(model: dict[str, Any], batch: int, steps: int, repeats: int, clock: Clock,
                    learner_kwargs: dict[str, Any]) -> Timings:
    return time_learner(model, learner_kwargs, batch, steps, repeats=repeats, clock=clock)


def summarize(t: Timings, confidence: float) -> dict[str, Any]:
    """Learn and predict latency (p50, p99 and p99's upper bound, ms), memory and throughput of one measurement."""
    learn = fit_stats.p99_bound(t.learn_s, confidence)
    pred = fit_stats.p99_bound(t.predict_s, confidence)
    rep = t.memory
    busy = sum(map(sum, t.learn_s))
    n = sum(map(len, t.learn_s))
    return {"latency_ms_p50": learn["p50"], "latency_ms_p99": learn["p99"], "latency_ms_p99_upper": learn["p99_upper"],
            "latency_ms_p99_per_repeat": learn["p99_per_repeat"],
            "predict_ms_p50": pred["p50"], "predict_ms_p99": pred["p99"], "predict_ms_p99_upper": pred["p99_upper"],
            "repeats": learn["repeats"], "steps_per_repeat": learn["steps_per_repeat"], "confidence": confidence,
            "budget_bytes": rep["budget_bytes"], "used_bytes": rep["used_bytes"],
            "buffer_capacity": rep["buffer_capacity"], "bytes_per_sample": rep.get("bytes_per_sample"),
            "parts": rep.get("parts"), "step_workspace_bytes": rep.get("step_workspace_bytes"),
            "device": t.device, "steps_timed": n, "samples_per_s": (n / busy) if busy > 0 else None,
            # every timing (ms, repeats in order), for the plots (--plots)
            "learn_ms": [round(1e3 * s, 4) for block in t.learn_s for s in block],
            "predict_ms": [round(1e3 * s, 4) for block in t.predict_s for s in block]}


def run_fit(fit: FitConfig, steps: int = 300, measure: Measure | None = None,
            rss_mb: Callable[[], float] = peak_rss_mb) -> dict[str, Any]:
    """Answer whether the configured learner fits: learn p99's upper bound, state bytes and peak RSS.

    ``measure`` times one learner configuration (default: the real learner, :func:`default_measure`).
    """
    if steps < 1:
        raise ValueError(f"--fit-steps {steps} must be >= 1")
    measure = measure or default_measure(fit, steps)
    doc: dict[str, Any] = {"kind": "budget-fit", "config": fit.source, "model": _plain(fit.model),
                           "latency_budget_ms": fit.latency_budget_ms,
                           "rss_budget_mb": fit.rss_budget_mb, "learner": _plain(fit.learner), "batch": fit.batch,
                           "threads": torch.get_num_threads(), "repeats": fit.repeats, "confidence": fit.confidence}
    try:
        m = summarize(measure(dict(fit.learner)), fit.confidence)
    except ValueError as exc:  # the budget cannot even hold the fixed state
        doc.update({"fits": False, "reasons": [f"memory: {exc}"], "measured": None, "peak_rss_mb": rss_mb()})
        return doc
    reasons = []
    if not m["latency_ms_p99_upper"] <= fit.latency_budget_ms:
        reasons.append(f"latency: learn p99 upper bound {m['latency_ms_p99_upper']:.3f} ms "
                       f"({fit.confidence:.0%} confidence, {m['repeats']} repeats) > budget "
                       f"{fit.latency_budget_ms} ms")
    if m["used_bytes"] > m["budget_bytes"]:
        reasons.append(f"memory: state {m['used_bytes']:,} B > budget {m['budget_bytes']:,} B")
    rss = rss_mb()
    if fit.rss_budget_mb is not None and rss > fit.rss_budget_mb:
        reasons.append(f"rss: peak RSS {rss:.0f} MiB > budget {fit.rss_budget_mb} MiB (--rss-budget-mb)")
    doc.update({"fits": not reasons, "reasons": reasons, "measured": m, "peak_rss_mb": rss})
    return doc


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

