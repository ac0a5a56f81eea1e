"""The demo's accuracy-over-the-stream figure as a standalone SVG (no matplotlib: the demo needs no extras)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLORS = ("#3b75af", "#c0392b", "#2e8b57", "#8e44ad")


def accuracy_svg(series: dict[str, Sequence[tuple[float, float]]], changes: Sequence[tuple[float, str]],
                 consolidations: Sequence[float], window: tuple[float, float] | None, title: str,
                 chance: float, width: int = 900, height: int = 360) -> str:
    """Accuracy curves (x: samples published, y: accuracy) with concept changes as labelled solid lines,
    consolidations as short ticks and the retention window shaded; returns the SVG text."""
    left, right, top, bottom = 50, 170, 40, 45
    xs = [x for pts in series.values() for x, _ in pts] + [x for x, _ in changes]
    x_max = max(xs, default=1.0) or 1.0
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * x / x_max

    def py(y: float) -> float:
        return top + ph * (1 - y)

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'),
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    if window is not None:
        out.append(f'<rect x="{px(window[0]):.1f}" y="{top}" width="{max(1.0, px(window[1]) - px(window[0])):.1f}" '
                   f'height="{ph}" fill="#f5d76e" opacity="0.35"/>')
        out.append(f'<text x="{px(window[0]) + 3:.1f}" y="{top + ph - 6}" fill="#7a6000">retention window</text>')
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{int(v * 100)}%</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(chance):.1f}" y2="{py(chance):.1f}" '
               f'stroke="#999" stroke-dasharray="2 4"/>')
    out.append(f'<text x="{left + pw - 4}" y="{py(chance) - 4:.1f}" text-anchor="end" fill="#777">chance</text>')
    for x, label in changes:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + ph}" stroke="#333"/>')
        out.append(f'<text x="{px(x) + 4:.1f}" y="{top + 12}" font-weight="bold">{escape(label)}</text>')
    for x in consolidations:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top + ph}" y2="{top + ph - 10}" '
                   f'stroke="#e08a1e" stroke-width="2"/>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        if pts:
            d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        ly = top + 20 + 22 * i
        out.append(f'<line x1="{left + pw + 15}" x2="{left + pw + 40}" y1="{ly}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="3"/><text x="{left + pw + 45}" y="{ly + 4}">{escape(name)}</text>')
    ly = top + 20 + 22 * len(series)
    out.append(f'<line x1="{left + pw + 27}" x2="{left + pw + 27}" y1="{ly - 6}" y2="{ly + 6}" stroke="#e08a1e" '
               f'stroke-width="2"/><text x="{left + pw + 45}" y="{ly + 4}">consolidation</text>')
    out.append(f'<line x1="{left + pw + 27}" x2="{left + pw + 27}" y1="{ly + 16}" y2="{ly + 28}" stroke="#333"/>'
               f'<text x="{left + pw + 45}" y="{ly + 26}">concept change</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">samples published '
               f'(accuracy of the predictions, made before each label is learned)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
