"""Tiny inline-SVG charts (no JavaScript, no CDN): line charts and bars with error bars."""

from __future__ import annotations

import math
from html import escape

__all__ = ["bar_chart", "line_chart"]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_chart(
    series: dict[str, tuple[list[float], list[float]]],
    title: str,
    log_y: bool = False,
    width: int = 500,
    height: int = 240,
) -> str:
    """An SVG line chart: ``series`` maps a label to (xs [N], ys [N]); non-finite (and, with ``log_y``,
    non-positive) points are dropped. Returns the ``<svg>`` element as a string."""
    clean: dict[str, list[tuple[float, float]]] = {}
    for name, (xs, ys) in series.items():
        pts = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(y) and (y > 0 or not log_y)]
        if pts:
            clean[name] = pts
    left, right, top, bottom = 56, 12, 24, 30
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg" role="img"><title>{escape(title)}</title>',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']  # fmt: skip
    if not clean:
        out.append(f'<text x="{left}" y="{height // 2}" font-size="12">no data</text></svg>')
        return "".join(out)
    xs = [p[0] for pts in clean.values() for p in pts]
    ys = [math.log10(p[1]) if log_y else p[1] for pts in clean.values() for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - ((math.log10(y) if log_y else y) - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>')
    for frac in (0.0, 0.5, 1.0):
        yv = y0 + frac * (y1 - y0)
        label = _fmt(10**yv if log_y else yv)
        yy = top + ph - frac * ph
        out.append(f'<text x="{left - 4}" y="{yy + 4:.1f}" font-size="10" text-anchor="end">{label}</text>')
    for frac in (0.0, 0.5, 1.0):
        xv = x0 + frac * (x1 - x0)
        out.append(
            f'<text x="{left + frac * pw:.1f}" y="{height - 12}" font-size="10" text-anchor="middle">{_fmt(xv)}</text>'
        )
    for i, (name, pts) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        out.append(
            f'<text x="{left + 8 + 110 * (i % 4)}" y="{top + 14 + 12 * (i // 4)}" font-size="11" fill="{colour}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def bar_chart(rows: list[tuple[str, float, float, float]], title: str, width: int = 520) -> str:
    """Bars in [0, 1] with error bars: ``rows`` = (label, value, low, high). Returns an ``<svg>`` string."""
    left, bar_h, gap, top = 190, 18, 8, 26
    height = top + len(rows) * (bar_h + gap) + 20
    pw = width - left - 50
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg" role="img"><title>{escape(title)}</title>',
           f'<text x="8" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']  # fmt: skip
    for i, (label, v, lo, hi) in enumerate(rows):
        y = top + i * (bar_h + gap)
        out.append(
            f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(label)}</text>'
        )
        out.append(f'<rect x="{left}" y="{y}" width="{pw * v:.1f}" height="{bar_h}" fill="#2ca02c"/>')
        out.append(
            f'<line x1="{left + pw * lo:.1f}" x2="{left + pw * hi:.1f}" y1="{y + bar_h / 2}" y2="{y + bar_h / 2}" stroke="#000" stroke-width="1.5"/>'
        )
        out.append(f'<text x="{left + pw + 4}" y="{y + 13}" font-size="11">{v:.0%}</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top - 4}" y2="{height - 16}" stroke="#888"/>')
    out.append("</svg>")
    return "".join(out)
