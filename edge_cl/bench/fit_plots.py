"""PNG plots of a budget fit (``edge-cl bench --config ... --plots DIR``): the configured model's learn and predict
latency against the budget, and, with ``--sweep``, the latency of each buffer size tried per replay batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_cl.bench.plots import pyplot


def _model_name(doc: dict[str, Any]) -> str:
    model = doc.get("model") or {}
    kind = str(model.get("type", "model"))
    hidden = model.get("hidden")
    shape = "-".join(str(v) for v in (model.get("input_dim"), *(hidden or []), model.get("num_classes"))
                     if v is not None)
    method = (doc.get("learner") or {}).get("method")
    return f"{kind} {shape}".strip() + (f", {method}" if method else "")


def write_fit_plots(doc: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the plots of a budget-fit document into ``out_dir``; returns the files written (none for a
    configuration that could not even be built: nothing was timed)."""
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    m = doc.get("measured") or {}
    budget = float(doc["latency_budget_ms"])
    verdict = "FITS" if doc.get("fits") else "DOES NOT FIT"
    if m.get("learn_ms"):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        learn, predict = np.asarray(m["learn_ms"]), np.asarray(m.get("predict_ms") or [])
        hi = float(np.percentile(np.concatenate([learn, predict]) if len(predict) else learn, 99.5))
        bins = np.linspace(0.0, max(hi, 1e-6), 60)
        ax.hist(np.clip(learn, 0, hi), bins=bins, alpha=0.6, label=f"learn (p99 {m['latency_ms_p99']:.3f} ms)")
        if len(predict):
            ax.hist(np.clip(predict, 0, hi), bins=bins, alpha=0.6, label=f"predict (p99 {m['predict_ms_p99']:.3f} ms)")
        upper = float(m["latency_ms_p99_upper"])
        ax.axvline(upper, color="C3", ls="--",
                   label=f"learn p99 upper end, {m['confidence']:.0%} confidence over {m['repeats']} repeats "
                         f"({upper:.3f} ms)")
        if budget <= hi * 1.5:  # a budget far to the right would squash the histogram into one bar
            ax.axvline(budget, color="k", lw=1.5, label=f"latency budget ({budget:g} ms)")
        else:
            ax.text(0.98, 0.95, f"budget {budget:g} ms (off the scale)", transform=ax.transAxes, ha="right", va="top")
        ax.set_xlabel(f"latency per call, ms (batch {doc.get('batch')}; clipped at p99.5)")
        ax.set_ylabel("calls")
        ax.set_title(f"{_model_name(doc)}: {verdict}\n{Path(str(doc.get('config', ''))).name}, "
                     f"{m.get('steps_timed')} steps timed on {m.get('device')}", fontsize=10)
        ax.legend(fontsize=8)
        p = out / "fit_latency.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(p)
    rows = [r for r in doc.get("sweep") or [] if r.get("tried")]
    if rows:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for k, row in enumerate(rows):
            tried = sorted(row["tried"], key=lambda t: t["buffer"])
            xs = [t["buffer"] for t in tried]
            ax.plot(xs, [t["measured_ms"] for t in tried], "o", color=f"C{k}", ms=4)
            ax.plot(xs, [t["effective_ms"] for t in tried], "-", color=f"C{k}",
                    label=f"replay {row['replay_batch']}" + (f": largest fitting buffer {row['largest_buffer_that_fits']}"
                                                            if row.get("largest_buffer_that_fits") else ": none fits"))
        ax.axhline(budget, color="k", lw=1.5, label=f"latency budget ({budget:g} ms)")
        ax.set_xlabel("buffer size (samples)")
        ax.set_ylabel("learn p99 upper end, ms")
        ax.set_title(f"{_model_name(doc)}: sweep (dots: measured; lines: monotone cost the verdict uses)", fontsize=10)
        ax.legend(fontsize=8)
        p = out / "fit_sweep.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(p)
    return written
