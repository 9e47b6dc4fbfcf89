"""Inline SVG charts of metrics across versions: no JavaScript, no library, nothing fetched.

Called by `modelreg.ui.pages` (the model page: a line over all versions; the compare page: bars).
Pure: points in, an `<svg>` string out, with a <title> and a text table fallback left to the page
(each chart is `role="img"` with an accessible name that gives the range). Sizes are fixed so
pages render identically on every run (the screenshot test relies on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from modelreg.ui.layout import Safe, esc

WIDTH = 360
HEIGHT = 160
_PAD_LEFT = 48
_PAD_RIGHT = 12
_PAD_TOP = 14
_PAD_BOTTOM = 28
MAX_DOTS = 60  # beyond this many versions a line chart marks only the highlighted points


@dataclass(frozen=True)
class Point:
    label: str  # x axis: "v3"
    value: float | None  # None: the version has no such metric (a gap)
    highlight: bool = False  # the best one, or the selected one


def fmt(value: float) -> str:
    """A short number for an axis or a tooltip."""
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _scale(values: Sequence[float], bounds: Sequence[float]) -> tuple[float, float]:
    lo = min([*values, *bounds])
    hi = max([*values, *bounds])
    if math.isclose(lo, hi):
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _frame(
    title: str, lo: float, hi: float, inner: str, labels: str, bounds: Sequence[float]
) -> Safe:
    plot_h = HEIGHT - _PAD_TOP - _PAD_BOTTOM

    def y(v: float) -> float:
        return _PAD_TOP + plot_h * (1 - (v - lo) / (hi - lo))

    grid = []
    for v in (lo, (lo + hi) / 2, hi):
        grid.append(
            f'<line class="grid" x1="{_PAD_LEFT}" x2="{WIDTH - _PAD_RIGHT}" '
            f'y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
            f'<text class="axis" x="{_PAD_LEFT - 6}" y="{y(v) + 4:.1f}" '
            f'text-anchor="end">{esc(fmt(v))}</text>'
        )
    for b in bounds:
        grid.append(
            f'<line class="gate" x1="{_PAD_LEFT}" x2="{WIDTH - _PAD_RIGHT}" '
            f'y1="{y(b):.1f}" y2="{y(b):.1f}"><title>gate {esc(fmt(b))}</title></line>'
        )
    return Safe(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{esc(title)}</title>{''.join(grid)}{inner}{labels}</svg>"
    )


def _x_positions(n: int) -> list[float]:
    span = WIDTH - _PAD_LEFT - _PAD_RIGHT
    if n == 1:
        return [_PAD_LEFT + span / 2]
    step = span / n
    return [_PAD_LEFT + step * (i + 0.5) for i in range(n)]


def _labels(points: Sequence[Point], xs: Sequence[float]) -> str:
    # Thin the labels when there are many versions: at most ~12 fit under the axis.
    every = max(1, math.ceil(len(points) / 12))
    out = []
    for i, (p, x) in enumerate(zip(points, xs, strict=True)):
        if i % every and i != len(points) - 1:
            continue
        out.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{esc(p.label)}</text>"
        )
    return "".join(out)


def _summary(metric: str, points: Sequence[Point]) -> str:
    known = [p for p in points if p.value is not None]
    if not known:
        return f"{metric}: no values"
    lo = min(known, key=lambda p: p.value or 0.0)
    hi = max(known, key=lambda p: p.value or 0.0)
    return (
        f"{metric} across {len(points)} versions: lowest {fmt(lo.value or 0.0)} ({lo.label}), "
        f"highest {fmt(hi.value or 0.0)} ({hi.label})"
    )


def line_chart(metric: str, points: Sequence[Point], bounds: Sequence[float] = ()) -> Safe:
    """The metric over versions (x: versions in order), with the gate bounds as dashed lines."""
    values = [p.value for p in points if p.value is not None]
    if not values:
        return Safe("")
    lo, hi = _scale(values, bounds)
    plot_h = HEIGHT - _PAD_TOP - _PAD_BOTTOM
    xs = _x_positions(len(points))

    def y(v: float) -> float:
        return _PAD_TOP + plot_h * (1 - (v - lo) / (hi - lo))

    segments: list[list[str]] = [[]]
    dots = []
    for p, x in zip(points, xs, strict=True):
        if p.value is None:
            segments.append([])
            continue
        segments[-1].append(f"{x:.1f},{y(p.value):.1f}")
        if len(points) > MAX_DOTS and not p.highlight:
            continue  # the line alone: hundreds of dots would cost more than they show
        r = 4.5 if p.highlight else 3
        cls = "dot best" if p.highlight else "dot"
        dots.append(
            f'<circle class="{cls}" cx="{x:.1f}" cy="{y(p.value):.1f}" r="{r}">'
            f"<title>{esc(p.label)}: {esc(fmt(p.value))}</title></circle>"
        )
    lines = "".join(
        f'<polyline class="line" points="{" ".join(seg)}"/>' for seg in segments if len(seg) > 1
    )
    return _frame(
        _summary(metric, points), lo, hi, lines + "".join(dots), _labels(points, xs), bounds
    )


def bar_chart(metric: str, points: Sequence[Point], bounds: Sequence[float] = ()) -> Safe:
    """One bar per version from the axis floor (the best one marked), for the compare page."""
    values = [p.value for p in points if p.value is not None]
    if not values:
        return Safe("")
    lo, hi = _scale(values, bounds)
    if lo > 0 and min(values) > 0:
        lo = min(0.0, lo)  # bars of positive numbers start at zero: no exaggerated differences
    plot_h = HEIGHT - _PAD_TOP - _PAD_BOTTOM
    xs = _x_positions(len(points))
    width = min(48.0, (WIDTH - _PAD_LEFT - _PAD_RIGHT) / len(points) * 0.6)

    def y(v: float) -> float:
        return _PAD_TOP + plot_h * (1 - (v - lo) / (hi - lo))

    base = y(max(lo, min(0.0, hi)))
    bars = []
    for p, x in zip(points, xs, strict=True):
        if p.value is None:
            continue
        top = y(p.value)
        cls = "bar best" if p.highlight else "bar"
        bars.append(
            f'<rect class="{cls}" x="{x - width / 2:.1f}" y="{min(top, base):.1f}" '
            f'width="{width:.1f}" height="{abs(base - top):.1f}">'
            f"<title>{esc(p.label)}: {esc(fmt(p.value))}</title></rect>"
        )
    return _frame(_summary(metric, points), lo, hi, "".join(bars), _labels(points, xs), bounds)
