"""PNG plots of a bench document: accuracy-matrix heatmaps, accuracy over the stream, latency histograms."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plots needs matplotlib: pip install 'edge-cl[bench]'") from None
    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_plots(doc: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write every plot for ``doc`` into ``out_dir``; returns the files written."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stream = doc.get("stream", {})
    methods = doc.get("methods", {})

    for name, r in methods.items():
        m = r.get("accuracy_matrix")
        if m is None:
            continue
        fig, ax = plt.subplots(figsize=(6, 5))
        im = ax.imshow(np.asarray(m) * 100, vmin=0, vmax=100, cmap="viridis")
        ax.set_xlabel("evaluated on task j")
        ax.set_ylabel("after learning task i")
        ax.set_title(f"{stream.get('name')}: {name} (accuracy %)")
        fig.colorbar(im, ax=ax)
        p = out / f"matrix_{_safe(name)}.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(p)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    any_line = False
    for name, r in methods.items():
        sa = r.get("stream_accuracy") or {}
        vals, window = sa.get("values") or [], sa.get("window") or 1
        if not vals:
            continue
        xs = (np.arange(len(vals)) + 0.5) * window
        line = ax.plot(xs, np.asarray(vals) * 100, label=f"{name} (prequential)", lw=1.2)[0]
        any_line = True
        if r.get("seen_task_acc") and r.get("task_ends"):
            ax.plot(r["task_ends"], np.asarray(r["seen_task_acc"]) * 100, "o--", color=line.get_color(), ms=3,
                    lw=0.8, label=f"{name} (test, seen tasks)")
        for i, c in enumerate(r.get("consolidation_at") or []):
            ax.axvline(c, color=line.get_color(), alpha=0.35, lw=0.8, ls=":",
                       label=f"{name} consolidation / drift" if i == 0 else None)
    if any_line:
        first: dict[str, Any] = next(iter(methods.values()), {})
        for e in (first.get("task_ends") or [])[:-1]:
            ax.axvline(e, color="grey", alpha=0.25, lw=0.6)
        ax.set_xlabel("samples seen")
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{stream.get('name')}: accuracy over the stream (grey: task boundaries, unknown to learners)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        p = out / "stream_accuracy.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        written.append(p)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    any_hist = False
    for name, r in methods.items():
        lat = r.get("latencies_ms") or []
        if lat:
            hi = float(np.percentile(lat, 99.5))
            ax.hist(np.clip(lat, 0, hi), bins=60, alpha=0.5, label=name)
            any_hist = True
    if any_hist:
        ax.set_xlabel("learn() latency, ms (clipped at p99.5)")
        ax.set_ylabel("steps")
        ax.set_title(f"{stream.get('name')}: update latency")
        ax.legend(fontsize=8)
        p = out / "latency_hist.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        written.append(p)
    plt.close(fig)
    return written
