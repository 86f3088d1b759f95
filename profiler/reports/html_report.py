"""A self-contained HTML report: summary table and inline SVG plots, no plotting library.

Plots compare models x delegates x devices: for each model, one latency-distribution row
per device/delegate (min-max whisker, p5/p50/p95 or p50/p90/p99 box where known, mean
marker with its 95% CI), then memory and power bars (``svg``). Every figure keeps its
provenance (statistics line or samples, power sampling rate) in the tables below the plots.
Numbers go through ``mobile_compress.report.numbers``; wide tables scroll inside their own
block, and a run's failure reason is the row right under it, never a cell off to the right.
"""
from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from mobile_compress.report import format_field, format_fields, format_number, format_value, write_text
from mobile_compress.report import field_label
from profiler.reports.rows import flat, refused_note
from profiler.reports.svg import bar_svg, latency_svg
from profiler.results import RunRecord

__all__ = ["bar_svg", "environment_line", "latency_svg", "page_head", "render_html", "run_note", "write_html"]


def _fmt(value: Any, unit: str | None = None, with_unit: bool = True) -> str:
    """A figure for the page, HTML-escaped, at its unit's precision (``mobile_compress.report.numbers``)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return html.escape(format_number(value, unit, with_unit))
    return html.escape(format_value(value, unit))


# (row key, header, unit): the unit sets the precision (mobile_compress.report.numbers); a column no run
# has a figure for is left out, so a host profile is not a wall of dashes.
TABLE_COLUMNS: list[tuple[str, str, str | None]] = [
    ("device", "device", None), ("delegate", "delegate", None), ("status", "status", None), ("n", "n", None),
    ("mean_ms", "mean ms", "ms"), ("std_ms", "std ms", "ms"), ("min_ms", "min ms", "ms"),
    ("median_ms", "p50 ms", "ms"), ("p90_ms", "p90 ms", "ms"), ("p95_ms", "p95 ms", "ms"), ("p99_ms", "p99 ms", "ms"),
    ("max_ms", "max ms", "ms"), ("ci95", "95% CI of mean, ms", None), ("init_ms", "init ms", "ms"),
    ("first_ms", "first ms", "ms"), ("mem_overall_mb", "footprint MB", "MB"), ("vm_hwm_mb", "VmHWM MB", "MB"),
    ("power_mw", "mW above idle", "mW"), ("mj_per_inference", "mJ / inference", "mJ"),
    ("power_rate_hz", "power samples/s", "Hz"), ("thermal", "thermal before → after", None),
    ("coverage", "coverage", None), ("latency_source", "latency from", None)]
ALWAYS = ("device", "delegate", "status")
NUMERIC = ("n", "ci95")  # figures without a unit of their own; the rest without a unit are text


def _table_row(r: dict[str, Any]) -> dict[str, Any]:
    """The run's figures as the table shows them: the CI and the thermal states in one cell each."""
    ci = None
    if r["ci95_low_ms"] is not None and r["ci95_high_ms"] is not None:
        ci = f"{format_number(r['ci95_low_ms'], 'ms', False)}–{format_number(r['ci95_high_ms'], 'ms', False)}"
    thermal = None
    if r["thermal_before"] or r["thermal_after"]:
        thermal = f"{r['thermal_before'] or '?'} → {r['thermal_after'] or '?'}"
    return {**r, "ci95": ci, "thermal": thermal}


def run_note(r: dict[str, Any]) -> str:
    """Why a run failed, or what it lacks (power not measured, device files not pulled): one line under its row."""
    note = r["error"] or ("" if r["power_mw"] is not None or r["mode"] == "host" else r["power_status"])
    return "; ".join(n for n in (note, r.get("refused_note")) if n)


def _table(rows: list[dict[str, Any]]) -> str:
    rows = [_table_row(r) for r in rows]
    columns = [(key, head, unit) for key, head, unit in TABLE_COLUMNS
               if key in ALWAYS or any(r[key] not in (None, "") for r in rows)]
    kinds = ["" if unit or key in NUMERIC else " class='text'" for key, _, unit in columns]
    head = "".join(f"<th{k}>{html.escape(h)}</th>" for (_, h, _), k in zip(columns, kinds))
    body = []
    for r in rows:
        bad = r["status"] != "ok"
        cells = "".join(f"<td{k}>{_fmt(r[key], unit, False)}</td>" for (key, _, unit), k in zip(columns, kinds))
        body.append(f"<tr class='run{' bad' if bad else ''}'>{cells}</tr>")
        note = run_note(r)
        if note:
            label = "why it failed" if bad else "note"
            body.append(f"<tr class='reason{' bad' if bad else ''}'><td colspan='{len(columns)}'><div class='why'>"
                        f"<b>{label}:</b> {html.escape(note)}</div></td></tr>")
    return (f"<div class='wide'><table class='runs'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></div>")


def _devices(records: list[RunRecord]) -> str:
    """One column per device, one row per fact: as many devices as there are, facts as long as they are."""
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.device_info and r.device not in seen:
            seen[r.device] = r.device_info
    if not seen:
        return ""
    devices = sorted(seen)
    keys = sorted({k for info in seen.values() for k in info if k != "note"})
    head = "<th>fact</th>" + "".join(f"<th>{html.escape(d)}</th>" for d in devices)
    rows = "".join(f"<tr><th>{html.escape(field_label(k))}</th>"
                   + "".join(f"<td>{html.escape(format_field(k, seen[d].get(k)))}</td>" for d in devices) + "</tr>"
                   for k in keys)
    return (f"<h2>Devices</h2><div class='wide'><table class='facts'><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")


def _slowest_ops(records: list[RunRecord], model: str) -> str:
    parts = []
    for r in sorted((r for r in records if r.model == model and r.slowest_ops), key=lambda r: (r.device, r.delegate)):
        items = "".join(f"<li>{_fmt(op['avg_ms'], 'ms')} ({_fmt(op['percent'], '%')}) {html.escape(op['node_type'])} "
                        f"<code>{html.escape(op['name'])}</code></li>" for op in r.slowest_ops[:5])
        parts.append(f"<p>Slowest operators, {html.escape(r.device)} · {html.escape(r.delegate)}:</p><ol>{items}</ol>")
    return "".join(parts)


# Wide tables scroll inside their own block, cells wrap (a long error or path breaks anywhere), and a run's
# note sits on the row under it, so nothing runs off the right of a 1280 px window.
PAGE_STYLE = ("body{font-family:sans-serif;margin:2em;color:#222;max-width:1400px}"
              "h1,h2,h3,p,li,code{overflow-wrap:anywhere}"
              ".wide{max-width:100%;overflow-x:auto;margin:0.5em 0}"
              "table{border-collapse:collapse;font-size:12px}"
              "td,th{border:1px solid #ccc;padding:3px 4px;text-align:right;vertical-align:top}"
              "th{background:#f3f3f3}td:first-child,th:first-child,table.facts th,table.facts td,td.text,th.text"
              "{text-align:left}td.num{white-space:nowrap}"
              "td.note{min-width:16em;overflow-wrap:anywhere}"
              "tr.bad td{background:#fdecea}tr.reason td{text-align:left;overflow-wrap:anywhere}"
              "tr.reason.bad td{color:#8a1c1c}"
              # a table wider than the window scrolls in its block; the reason stays in view as it scrolls
              ".why{position:sticky;left:0.5em;max-width:calc(100vw - 6em)}tr.run.bad td{border-bottom:none}"
              ".host{color:#a33;font-weight:bold}svg{max-width:100%;height:auto}")


def page_head(title: str) -> str:
    """The opening of a self-contained report page (shared with reports built on these plots)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body>")


def environment_line(environment: dict[str, Any] | None) -> str:
    """What the report was made on (date, machine, versions), every number in its unit."""
    if not environment:
        return ""
    return f"<p class='env'>Made on: {html.escape(format_fields(environment))}</p>"


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
    parts.append(environment_line(environment))
    if any(r["mode"] == "host" for rows in by_model.values() for r in rows):
        parts.append("<p class='host'>Rows labelled host were measured with the LiteRT interpreter on this "
                     "computer, not on a phone.</p>")
    parts.append(_devices(records))
    parts.append("<p>Latency plot: line = min to max, box = p5 to p95 (benchmark_model) or p50 to p90 "
                 "(per-run samples), thick tick = median, dot = mean, black bar below = 95% CI of the mean.</p>")
    for model, rows in sorted(by_model.items()):
        rows.sort(key=lambda r: (r["device"], r["delegate"]))
        parts.append(f"<h2>{html.escape(model)}</h2>")
        latency = latency_svg(rows, f"latency of {model}")
        if latency:
            parts.append("<h3>Latency per delegate (ms)</h3>" + latency)
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
