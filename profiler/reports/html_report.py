"""A self-contained HTML report: summary table and inline SVG plots, no plotting library.

Plots compare models x delegates x devices: for each model, one latency-distribution row
per device/delegate (min-max whisker, p5/p50/p95 or p50/p90/p99 box where known, mean
marker with its 95% CI), then memory and power bars. Every figure keeps its provenance
(statistics line or samples, power sampling rate) in the tables below the plots.
"""
from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from mobile_compress.report import write_text
from profiler.reports.rows import flat, refused_note
from profiler.results import RunRecord

ROW_H = 22
LABEL_W = 260
PLOT_W = 460
COLORS = {"cpu": "#4c78a8", "gpu": "#f58518", "nnapi": "#54a24b", "external": "#b279a2"}


def _color(delegate: str) -> str:
    return COLORS.get(delegate.split("-")[0], "#888888")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return html.escape(str(value))


def _svg_open(height: int, title: str) -> list[str]:
    width = LABEL_W + PLOT_W + 80
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="12">']


def latency_svg(rows: list[dict[str, Any]], title: str) -> str:
    """One row per run: whisker min..max, box between the outer percentiles, tick at the median, dot at the mean."""
    rows = [r for r in rows if r["mean_ms"] is not None]
    if not rows:
        return ""
    top = max((r["max_ms"] if r["max_ms"] is not None else r["mean_ms"]) for r in rows) or 1.0
    x = lambda v: LABEL_W + PLOT_W * (v / top)  # noqa: E731
    height = ROW_H * len(rows) + 40
    out = _svg_open(height, title)
    for i, r in enumerate(rows):
        y = 10 + i * ROW_H + ROW_H / 2
        color = _color(r["delegate"])
        out.append(f'<text x="{LABEL_W - 6}" y="{y + 4}" text-anchor="end">{html.escape(r["label"])}</text>')
        if r["min_ms"] is not None and r["max_ms"] is not None:
            out.append(f'<line x1="{x(r["min_ms"]):.1f}" x2="{x(r["max_ms"]):.1f}" y1="{y}" y2="{y}" '
                       f'stroke="{color}" stroke-width="1"><title>min {_fmt(r["min_ms"])} / max '
                       f'{_fmt(r["max_ms"])} ms</title></line>')
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
                   f'{_fmt(r["mean_ms"])} ms (n={r["n"]})</title></circle>')
        out.append(f'<text x="{LABEL_W + PLOT_W + 6}" y="{y + 4}">{_fmt(r["mean_ms"])} ms</text>')
    axis_y = height - 20
    out.append(f'<line x1="{LABEL_W}" x2="{LABEL_W + PLOT_W}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<text x="{LABEL_W + PLOT_W * frac:.1f}" y="{axis_y + 14}" text-anchor="middle" '
                   f'fill="#555">{_fmt(top * frac)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_svg(rows: list[dict[str, Any]], key: str, unit: str, title: str) -> str:
    rows = [r for r in rows if r.get(key) is not None]
    if not rows:
        return ""
    top = max(max(r[key] for r in rows), 0) or 1.0
    height = ROW_H * len(rows) + 20
    out = _svg_open(height, title)
    for i, r in enumerate(rows):
        y = 10 + i * ROW_H
        width = PLOT_W * max(r[key], 0) / top
        out.append(f'<text x="{LABEL_W - 6}" y="{y + 14}" text-anchor="end">{html.escape(r["label"])}</text>')
        fill = r.get("color") or _color(r["delegate"])  # a row may bring its own colour (e.g. before/after)
        out.append(f'<rect x="{LABEL_W}" y="{y + 3}" width="{width:.1f}" height="14" fill="{fill}"/>')
        out.append(f'<text x="{LABEL_W + width + 6:.1f}" y="{y + 14}">{_fmt(r[key])} {unit}</text>')
    out.append("</svg>")
    return "\n".join(out)


TABLE_COLUMNS = [("device", "device"), ("delegate", "delegate"), ("status", "status"), ("n", "n"),
                 ("mean_ms", "mean ms"), ("std_ms", "std ms"), ("min_ms", "min"), ("median_ms", "p50"),
                 ("p90_ms", "p90"), ("p99_ms", "p99"), ("p95_ms", "p95"), ("max_ms", "max"),
                 ("ci95_low_ms", "CI low"), ("ci95_high_ms", "CI high"), ("init_ms", "init ms"),
                 ("first_ms", "first ms"), ("mem_overall_mb", "footprint MB"), ("vm_hwm_mb", "VmHWM MB"),
                 ("power_mw", "mW above idle"), ("mj_per_inference", "mJ/inference"),
                 ("power_rate_hz", "power samples/s"), ("thermal_before", "thermal before"),
                 ("thermal_after", "thermal after"), ("coverage", "coverage"), ("latency_source", "latency from"),
                 ("error", "error / note")]


def _table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in TABLE_COLUMNS)
    body = []
    for r in rows:
        note = r["error"] or ("" if r["power_mw"] is not None or r["mode"] == "host" else r["power_status"])
        note = "; ".join(n for n in (note, r.get("refused_note")) if n)
        cells = [_fmt(note if key == "error" else r[key]) for key, _ in TABLE_COLUMNS]
        cls = "" if r["status"] == "ok" else ' class="bad"'
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _devices(records: list[RunRecord]) -> str:
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.device_info and r.device not in seen:
            seen[r.device] = r.device_info
    if not seen:
        return ""
    keys = sorted({k for info in seen.values() for k in info if k != "note"})
    head = "<th>device</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    rows = "".join("<tr><td>" + html.escape(d) + "</td>" + "".join(f"<td>{_fmt(info.get(k))}</td>" for k in keys)
                   + "</tr>" for d, info in sorted(seen.items()))
    return f"<h2>Devices</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _slowest_ops(records: list[RunRecord], model: str) -> str:
    parts = []
    for r in sorted((r for r in records if r.model == model and r.slowest_ops), key=lambda r: (r.device, r.delegate)):
        items = "".join(f"<li>{op['avg_ms']:.3f} ms ({op['percent']:.1f}%) {html.escape(op['node_type'])} "
                        f"<code>{html.escape(op['name'])}</code></li>" for op in r.slowest_ops[:5])
        parts.append(f"<p>Slowest operators, {html.escape(r.device)} · {html.escape(r.delegate)}:</p><ol>{items}</ol>")
    return "".join(parts)


PAGE_STYLE = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:12px}"
              "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
              "tr.bad td{background:#fdecea}.host{color:#a33;font-weight:bold}")


def page_head(title: str) -> str:
    """The opening of a self-contained report page (shared with reports built on these plots)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body>")


def render_html(records: Iterable[RunRecord], title: str = "mobile-compress profile",
                environment: dict[str, Any] | None = None) -> str:
    records = list(records)
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        row = flat(record)
        row["label"] = f"{row['device']} · {row['delegate']}"
        row["refused_note"] = refused_note(record)
        by_model[row["model"]].append(row)
    parts = [page_head(title), f"<h1>{html.escape(title)}</h1>"]
    if environment:
        parts.append("<p>" + html.escape(", ".join(f"{k}: {v}" for k, v in environment.items()
                                                   if isinstance(v, (str, int, float)))) + "</p>")
    if any(r["mode"] == "host" for rows in by_model.values() for r in rows):
        parts.append("<p class='host'>Rows labelled host were measured with the LiteRT interpreter on this "
                     "computer, not on a phone.</p>")
    parts.append(_devices(records))
    parts.append("<p>Latency plot: line = min to max, box = p5 to p95 (benchmark_model) or p50 to p90 "
                 "(per-run samples), thick tick = median, dot = mean, black bar below = 95% CI of the mean.</p>")
    for model, rows in sorted(by_model.items()):
        rows.sort(key=lambda r: (r["device"], r["delegate"]))
        parts.append(f"<h2>{html.escape(model)}</h2>")
        parts.append("<h3>Latency per delegate (ms)</h3>" + latency_svg(rows, f"latency of {model}"))
        memory = bar_svg([{**r, "mem": r["vm_hwm_mb"] if r["vm_hwm_mb"] is not None else r["mem_overall_mb"]}
                          for r in rows], "mem", "MB", f"memory of {model}")
        if memory:
            parts.append("<h3>Memory (VmHWM sampled from /proc, else benchmark_model's footprint)</h3>" + memory)
        power = bar_svg(rows, "power_mw", "mW", f"power of {model}")
        if power:
            parts.append("<h3>Power above idle baseline</h3>" + power)
        energy = bar_svg(rows, "mj_per_inference", "mJ", f"energy of {model}")
        if energy:
            parts.append("<h3>Energy per inference</h3>" + energy)
        parts.append(_table(rows))
        parts.append(_slowest_ops(records, model))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(records: Iterable[RunRecord], path: Path, environment: dict[str, Any] | None = None) -> Path:
    return write_text(path, render_html(records, environment=environment))
