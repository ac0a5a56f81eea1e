"""Budget fit: does the configured learner fit a device's update-latency and memory budgets?

It runs the learner from the daemon's config on a synthetic stream of the configured input shape, times
``learn`` (p50 / p99 against ``latency_budget_ms``), compares the learner's state bytes with ``budget_bytes``
and reports peak RSS; the sweep tries replay batch sizes and buffer sizes and names the largest that fits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edge_cl.bench import metrics
from edge_cl.bench.runner import build_model, peak_rss_mb

SWEEP_REPLAY = (0, 1, 2, 5, 10, 20, 32, 64, 128)
SWEEP_BUFFER = (0, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)


@dataclass
class FitConfig:
    """What the fit needs from the config: model spec, the learner's configuration, step size and the budgets."""

    model: dict[str, Any]
    learner: dict[str, Any]     # LearnerConfig fields: OnlineLearner(model, **learner) builds it
    batch: int
    latency_budget_ms: float
    rss_budget_mb: float | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_fit_config(path: str | Path, latency_budget_ms: float | None = None) -> FitConfig:
    """Read the daemon's TOML with ``edge_cl.config.load_config`` (the same schema the daemon reads).

    Its ``[bench]`` table may hold ``latency_budget_ms`` (or pass it here), ``rss_budget_mb`` and ``batch``
    (new samples per step; default ``learner.max_batch``, the daemon's largest step).
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
    learner = cfg.learner.learner_config(cfg.vector_input).model_dump()
    return FitConfig(model=dict(cfg.model), learner=learner, batch=cfg.bench.batch or cfg.learner.max_batch,
                     latency_budget_ms=float(lat), rss_budget_mb=cfg.bench.rss_budget_mb, source=str(path))


def _synthetic(model: Any, n: int, lo: float, hi: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n, int(model.input_dim)), generator=gen) * (hi - lo) + lo
    y = torch.randint(int(model.num_classes), (n,), generator=gen)
    return x, y


def measure(model_spec: dict[str, Any], learner_kwargs: dict[str, Any], batch: int, steps: int,
            seed: int = 0) -> dict[str, Any]:
    """Build the learner, fill its buffer, then time ``steps`` learn calls; raises ValueError if it cannot exist."""
    from edge_cl.learner import OnlineLearner

    model = build_model(model_spec, seed)
    kw = dict(learner_kwargs)
    learner = OnlineLearner(model, **kw)
    lo, hi = kw.get("input_range") or (0.0, 1.0)
    cap = learner.memory_report()["buffer_capacity"]
    # Warm-up: fill the buffer (capped) and pass a few importance updates so the timed steps are steady state.
    every = max((int(getattr(m, "every", 1)) for m in learner.methods), default=1)
    warm = max(20, min(cap, 20_000) // batch + 1, 3 * every)
    x, y = _synthetic(model, (warm + steps) * batch, float(lo), float(hi), seed)
    for i in range(warm):
        learner.learn(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
    lat = []
    clock = time.perf_counter
    for i in range(warm, warm + steps):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        t0 = clock()
        learner.learn(xb, yb)
        lat.append(clock() - t0)
    rep = learner.memory_report()
    out: dict[str, Any] = dict(metrics.latency_summary(lat))
    out.update({"budget_bytes": rep["budget_bytes"], "used_bytes": rep["used_bytes"],
                "buffer_capacity": rep["buffer_capacity"], "bytes_per_sample": rep.get("bytes_per_sample"),
                "parts": rep.get("parts"), "step_workspace_bytes": rep.get("step_workspace_bytes"),
                "device": str(learner.device), "steps_timed": steps, "batch": batch,
                "samples_per_s": steps * batch / sum(lat)})
    return out


def run_fit(fit: FitConfig, steps: int = 300) -> dict[str, Any]:
    """Answer whether the configured learner fits: latency p99, state bytes and (optionally) peak RSS."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    doc: dict[str, Any] = {"kind": "budget-fit", "config": fit.source, "latency_budget_ms": fit.latency_budget_ms,
                           "rss_budget_mb": fit.rss_budget_mb, "learner": _plain(fit.learner), "batch": fit.batch,
                           "threads": torch.get_num_threads()}
    try:
        m = measure(fit.model, fit.learner, fit.batch, steps)
    except ValueError as exc:  # the budget cannot even hold the fixed state
        doc.update({"fits": False, "reasons": [f"memory: {exc}"], "measured": None, "peak_rss_mb": peak_rss_mb()})
        return doc
    reasons = []
    if m["latency_ms_p99"] > fit.latency_budget_ms:
        reasons.append(f"latency: learn p99 {m['latency_ms_p99']:.3f} ms > budget {fit.latency_budget_ms} ms")
    if m["used_bytes"] > m["budget_bytes"]:
        reasons.append(f"memory: state {m['used_bytes']:,} B > budget {m['budget_bytes']:,} B")
    rss = peak_rss_mb()
    if fit.rss_budget_mb is not None and rss > fit.rss_budget_mb:
        reasons.append(f"rss: peak RSS {rss:.0f} MiB > budget {fit.rss_budget_mb} MiB")
    doc.update({"fits": not reasons, "reasons": reasons, "measured": m, "peak_rss_mb": rss})
    return doc


def run_sweep(fit: FitConfig, steps: int = 200, replay: tuple[int, ...] = SWEEP_REPLAY,
              buffers: tuple[int, ...] = SWEEP_BUFFER) -> dict[str, Any]:
    """Try replay batch sizes (timed) and buffer sizes (byte-checked); name the largest pair that fits both.

    Latency is timed once per replay batch with the largest buffer the byte budget allows (the slowest case);
    a buffer size fits when ``OnlineLearner.required_bytes`` for it is within ``budget_bytes``.
    """
    from edge_cl.learner import OnlineLearner
    from edge_cl.learner_config import LearnerConfig

    base = run_fit(fit, steps)
    budget = int(fit.learner["budget_bytes"])
    rows = []
    model = build_model(fit.model, 0)
    req_kw = {k: v for k, v in fit.learner.items() if k not in ("budget_bytes", "replay_batch", "device")}
    # Replay batch 0 would be another method (one without replay), which no setting may switch to: a replaying
    # method is swept over replay batches of at least 1.
    if LearnerConfig.model_validate({**fit.learner, "budget_bytes": budget, "replay_batch": 1}).uses_buffer():
        replay = tuple(r for r in replay if r > 0)
    for r in replay:
        kw = dict(fit.learner, replay_batch=r)
        try:
            m = measure(fit.model, kw, fit.batch, steps)
            lat_ok = m["latency_ms_p99"] <= fit.latency_budget_ms
            p99: float | None = m["latency_ms_p99"]
        except ValueError:
            lat_ok, p99, m = False, None, {}
        largest = None
        for n in buffers:
            need = OnlineLearner.required_bytes(model, buffer_samples=n, replay_batch=r, **req_kw)
            if (n == 0 or r > 0) and need <= budget and (r == 0 or n >= r):
                largest = n if r > 0 else 0
        rows.append({"replay_batch": r, "latency_ms_p99": p99, "latency_fits": lat_ok,
                     "largest_buffer_that_fits": largest, "buffer_capacity_at_budget": m.get("buffer_capacity")})
    fitting = [row for row in rows if row["latency_fits"] and row["largest_buffer_that_fits"] is not None]
    best = max(fitting, key=lambda row: (row["largest_buffer_that_fits"], row["replay_batch"]), default=None)
    base.update({"sweep": rows, "best": best, "sweep_buffers": list(buffers)})
    return base


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def fit_report_markdown(doc: dict[str, Any]) -> str:
    """A plain answer (FITS / DOES NOT FIT with the reasons) and, after a sweep, the table and the best pair."""
    m = doc.get("measured") or {}
    lines = [(f"**{'FITS' if doc['fits'] else 'DOES NOT FIT'}**: `{doc.get('config')}`, "
              f"method {doc['learner'].get('method')}, replay batch "
              f"{doc['learner'].get('replay_batch')}, batch {doc.get('batch')}, torch threads {doc.get('threads')}.")]
    lines += [f"- {r}" for r in doc.get("reasons", [])]
    if m:
        lines += [
            "",
            "| check | measured | budget | ok |", "|---|---|---|---|",
            (f"| learn latency p99 | {m['latency_ms_p99']:.3f} ms (p50 {m['latency_ms_p50']:.3f}) | "
             f"{doc['latency_budget_ms']} ms | {'yes' if m['latency_ms_p99'] <= doc['latency_budget_ms'] else 'no'} |"),
            (f"| learner state | {m['used_bytes']:,} B (buffer {m['buffer_capacity']} samples) | "
             f"{m['budget_bytes']:,} B | {'yes' if m['used_bytes'] <= m['budget_bytes'] else 'no'} |"),
            (f"| peak RSS (whole process) | {doc['peak_rss_mb']:.0f} MiB | "
             f"{doc['rss_budget_mb'] if doc.get('rss_budget_mb') else '-'} | "
             f"{'yes' if not doc.get('rss_budget_mb') or doc['peak_rss_mb'] <= doc['rss_budget_mb'] else 'no'} |"),
            f"| throughput | {m['samples_per_s']:,.0f} samples/s on {m['device']} | - | - |",
        ]
    if "sweep" in doc:
        lines += ["", "| replay batch | learn p99 ms | latency ok | largest buffer within budget_bytes |",
                  "|---|---|---|---|"]
        for r in doc["sweep"]:
            p99 = "-" if r["latency_ms_p99"] is None else f"{r['latency_ms_p99']:.3f}"
            lines.append(f"| {r['replay_batch']} | {p99} | {'yes' if r['latency_fits'] else 'no'} | "
                         f"{r['largest_buffer_that_fits'] if r['largest_buffer_that_fits'] is not None else 'none'} |")
        b = doc.get("best")
        lines += ["", (f"Largest configuration that fits: buffer {b['largest_buffer_that_fits']} samples "
                       f"(of the sizes tried: {doc['sweep_buffers']}), replay batch {b['replay_batch']}."
                       if b else "No configuration tried fits both budgets.")]
    return "\n".join(lines)
