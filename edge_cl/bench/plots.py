"""PNG plots of a bench document: accuracy-matrix heatmaps, accuracy over the stream, latency histograms."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend; ValueError naming the extra when it is missing."""
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
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stream = doc.get("stream", {})
    methods = doc.get("methods", {})

    for name, r in methods.items():
        m = r.get("accuracy_matrix")
        if m is None:
            continue
        mat = np.asarray(m) * 100
        n = mat.shape[0]
        fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * n + 2), max(4.0, 0.4 * n + 1.5)))
        im = ax.imshow(mat, vmin=0, vmax=100, cmap="viridis")
        ticks = np.arange(n)
        ax.set_xticks(ticks, [str(t + 1) for t in ticks])  # whole task numbers, never 2.5
        ax.set_yticks(ticks, [str(t + 1) for t in ticks])
        if n <= 25:  # values in the cells while they stay legible
            for i in range(n):
                for j in range(mat.shape[1]):
                    ax.text(j, i, f"{mat[i, j]:.0f}", ha="center", va="center", fontsize=7 if n > 10 else 9,
                            color="white" if mat[i, j] < 60 else "black")
        ax.set_xlabel("evaluated on task j")
        ax.set_ylabel("after learning task i")
        ax.set_title(f"{stream.get('name')}: {name}, accuracy % on task j after learning task i\n"
                     "(below the diagonal: what was kept; diagonal: what was just learned)", fontsize=9)
        fig.colorbar(im, ax=ax, label="accuracy %")
        p = out / f"matrix_{_safe(name)}.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(p)

    fig, ax = plt.subplots(figsize=(10, 4.8))
    any_line = False
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = [(name, r, False) for name, r in methods.items()] + \
             [(f"river {name}", r, True) for name, r in (doc.get("peers") or {}).items()]
    color_of: dict[str, str] = {}
    for k, (name, r, peer) in enumerate(curves):
        sa = r.get("stream_accuracy") or {}
        vals, window = sa.get("values") or [], sa.get("window") or 1
        if not vals:
            continue
        xs = (np.arange(len(vals)) + 0.5) * window
        base = name.removeprefix("bare-")
        bare = base != name
        # a bare loop shares its method's colour, drawn thin and dashed beneath it, so neither hides the other
        color = color_of.setdefault(base, colors[len(color_of) % len(colors)])
        ax.plot(xs, np.asarray(vals) * 100, color=color, lw=0.9 if bare or peer else 1.6,
                ls="--" if bare else (":" if peer else "-"), zorder=1 if bare else 2,
                label=f"{name}" + (" (plain PyTorch loop)" if bare else ""))
        any_line = True
        if r.get("seen_task_acc") and r.get("task_ends"):
            ax.plot(r["task_ends"], np.asarray(r["seen_task_acc"]) * 100, "o", color=color, ms=3.5,
                    label=f"{name}: test accuracy on tasks seen so far")
        cons = r.get("consolidation_at") or []
        if cons:  # consolidations: small triangles on the curve's colour at the bottom, not grey lines
            ax.plot(cons, np.full(len(cons), 1.5), "^", color=color, ms=5, ls="none", clip_on=False,
                    label=f"{name}: consolidation (loss plateau)")
    if any_line:
        first: dict[str, Any] = next(iter(methods.values()), {})
        ends = (first.get("task_ends") or [])[:-1]
        for i, e in enumerate(ends):
            ax.axvline(e, color="0.5", alpha=0.5, lw=0.8, ls="-",
                       label="task boundary (not told to the learners)" if i == 0 else None)
        ax.set_xlabel("samples seen")
        ax.set_ylabel("accuracy % (each sample predicted before it is learned)")
        ax.set_ylim(0, 101)
        title = f"{stream.get('name')}: accuracy over the stream"
        if ends:
            title += f", {len(ends) + 1} tasks"
        ax.set_title(title)
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
