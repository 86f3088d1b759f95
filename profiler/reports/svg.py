"""Inline SVG plots for the HTML reports, no plotting library.

Each run is one row: its label on the left, the plot, its figure on the right. The label
column grows with the longest label (up to a limit; longer ones are cut in the middle with
an ellipsis and keep their full text as a tooltip), so a long device name is not clipped.
"""
from __future__ import annotations

import html
from typing import Any

from mobile_compress.report import format_number

ROW_H = 22
LABEL_W = 260  # the narrowest label column
MAX_LABEL_W = 440
CHAR_W = 7  # a 12 px sans-serif character, generously
CAPITAL_W = 9  # a capital (or m, w)
PLOT_W = 460
VALUE_W = 110  # room right of the plot for the figure
COLORS = {"cpu": "#4c78a8", "gpu": "#f58518", "nnapi": "#54a24b", "external": "#b279a2"}


def _color(delegate: str) -> str:
    return COLORS.get(delegate.split("-")[0], "#888888")


def _figure(value: float, unit: str | None) -> str:
    return html.escape(format_number(value, unit))


def _text_width(text: str) -> float:
    """A generous estimate of ``text``'s width at 12 px: capitals and wide letters take more room."""
    return sum(CAPITAL_W if c.isupper() or c in "mw" else CHAR_W for c in text)


def _label_width(rows: list[dict[str, Any]]) -> int:
    widest = max((_text_width(str(r["label"])) for r in rows), default=0)
    return int(max(LABEL_W, min(MAX_LABEL_W, widest + 12)))


def _label(text: str, x: float, y: float, width: int) -> str:
    """Right-aligned at ``x``; cut in the middle to the column's width (its end, the delegate, stays), the
    whole text in a tooltip."""
    shown, head, tail = text, len(text), min(len(text) // 2, 16)
    while head > 4 and _text_width(shown) > width - 12:
        head -= 1
        shown = text[:head] + "…" + text[-tail:]
    return (f'<text x="{x}" y="{y}" text-anchor="end"><title>{html.escape(text)}</title>'
            f'{html.escape(shown)}</text>')


def _svg_open(height: int, title: str, label_w: int) -> list[str]:
    width = label_w + PLOT_W + VALUE_W
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}" '
            f'font-family="sans-serif" font-size="12">']


def latency_svg(rows: list[dict[str, Any]], title: str) -> str:
    """One row per run: whisker min..max, box between the outer percentiles, tick at the median, dot at the mean."""
    rows = [r for r in rows if r["mean_ms"] is not None]
    if not rows:
        return ""
    top = max(max(v for v in (r["max_ms"], r["mean_ms"], r["ci95_high_ms"]) if v is not None) for r in rows) or 1.0
    lw = _label_width(rows)
    x = lambda v: lw + PLOT_W * max(v / top, 0.0)  # noqa: E731 - a CI of a few runs may reach below 0 ms
    height = ROW_H * len(rows) + 40
    out = _svg_open(height, title, lw)
    for i, r in enumerate(rows):
        y = 10 + i * ROW_H + ROW_H / 2
        color = _color(r["delegate"])
        out.append(_label(str(r["label"]), lw - 6, y + 4, lw))
        if r["min_ms"] is not None and r["max_ms"] is not None:
            out.append(f'<line x1="{x(r["min_ms"]):.1f}" x2="{x(r["max_ms"]):.1f}" y1="{y}" y2="{y}" '
                       f'stroke="{color}" stroke-width="1"><title>min {_figure(r["min_ms"], None)} / max '
                       f'{_figure(r["max_ms"], "ms")}</title></line>')
        low, high = (r["p5_ms"], r["p95_ms"]) if r["p5_ms"] is not None else (r["median_ms"], r["p90_ms"])
        if low is not None and high is not None:
            out.append(f'<rect x="{x(low):.1f}" y="{y - 6}" width="{max(x(high) - x(low), 1):.1f}" height="12" '
                       f'fill="{color}" fill-opacity="0.35" stroke="{color}"/>')
        if r["median_ms"] is not None:
            out.append(f'<line x1="{x(r["median_ms"]):.1f}" x2="{x(r["median_ms"]):.1f}" y1="{y - 7}" '
                       f'y2="{y + 7}" stroke="{color}" stroke-width="2"/>')
        if r["ci95_low_ms"] is not None:
            out.append(f'<line x1="{x(r["ci95_low_ms"]):.1f}" x2="{x(r["ci95_high_ms"]):.1f}" y1="{y + 9}" '
                       f'y2="{y + 9}" stroke="black" stroke-width="2"/>')
        out.append(f'<circle cx="{x(r["mean_ms"]):.1f}" cy="{y}" r="3.5" fill="black"><title>mean '
                   f'{_figure(r["mean_ms"], "ms")} (n={r["n"]})</title></circle>')
        out.append(f'<text x="{lw + PLOT_W + 6}" y="{y + 4}">{_figure(r["mean_ms"], "ms")}</text>')
    axis_y = height - 20
    out.append(f'<line x1="{lw}" x2="{lw + PLOT_W}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<text x="{lw + PLOT_W * frac:.1f}" y="{axis_y + 14}" text-anchor="middle" '
                   f'fill="#555">{_figure(top * frac, "ms")}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_svg(rows: list[dict[str, Any]], key: str, unit: str, title: str) -> str:
    """One bar per row, its figure in ``unit`` (``mobile_compress.report.numbers``) at its end."""
    rows = [r for r in rows if r.get(key) is not None]
    if not rows:
        return ""
    top = max(max(r[key] for r in rows), 0) or 1.0
    lw = _label_width(rows)
    height = ROW_H * len(rows) + 20
    out = _svg_open(height, title, lw)
    for i, r in enumerate(rows):
        y = 10 + i * ROW_H
        width = PLOT_W * max(r[key], 0) / top
        out.append(_label(str(r["label"]), lw - 6, y + 14, lw))
        fill = r.get("color") or _color(r["delegate"])  # a row may bring its own colour (e.g. before/after)
        out.append(f'<rect x="{lw}" y="{y + 3}" width="{width:.1f}" height="14" fill="{fill}"/>')
        out.append(f'<text x="{lw + width + 6:.1f}" y="{y + 14}">{_figure(r[key], unit)}</text>')
    out.append("</svg>")
    return "\n".join(out)
