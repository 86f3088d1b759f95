"""The deploy report: the starting model against the deployed one, figure by figure.

One list of comparison rows (``comparison_rows``) feeds every view: the terminal table,
deploy.csv, deploy.json and deploy.html, whose plots are the profiler's own SVG helpers.
Latency, memory and power come from the profile (per delegate); accuracy, size, parameters
and MACs from the two .tflite files and their checkpoints.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows.deploy.sides import Side
from mobile_compress.report import Column, format_number, format_table, write_csv_rows, write_json, write_text
from profiler.reports import bar_svg, environment_line, latency_svg, page_head
from profiler.reports import flat
from profiler.results import RunRecord

SCHEMA = "mobile-compress/deploy"
SCHEMA_VERSION = 1
ROLES = ("before", "after")
ROLE_COLORS = {"before": "#9e9e9e", "after": "#2e7d32"}
CSV_COLUMNS = ["group", "metric", "delegate", "unit", "before", "after", "change", "before_status", "after_status",
               "note"]


@dataclass(frozen=True)
class Metric:
    """A compared figure: where it is read, its unit, and which direction is better.

    ``unit`` is the stored value's (JSON, CSV); ``shown_as`` the unit the views format it in
    (``mobile_compress.report.numbers``: ``bytes`` shows as KiB/MiB, ``count`` as ``3.50 M``).
    """

    key: str
    label: str
    unit: str
    better: str  # "lower" or "higher"
    shown_as: str | None = None

    def show(self, value: Any) -> str:
        return format_number(value, self.shown_as or self.unit)


MODEL_METRICS = [
    Metric("top1", "top-1 of the .tflite", "%", "higher"),
    Metric("size_bytes", ".tflite size", "bytes", "lower"),
    Metric("params", "parameters", "", "lower", shown_as="count"),
    Metric("macs", "MACs", "", "lower", shown_as="count"),
]
RUN_METRICS = [
    Metric("median_ms", "latency p50", "ms", "lower"),
    Metric("mean_ms", "latency mean", "ms", "lower"),
    Metric("mem_mb", "memory", "MB", "lower"),
    Metric("power_mw", "power above idle", "mW", "lower"),
    Metric("mj_per_inference", "energy", "mJ/inference", "lower"),
]


@dataclass
class DeployReport:
    """Everything the views show. ``records`` are the profile runs of this device (or the host)."""

    recipe: str
    run_dir: str
    before: Side
    after: Side
    records: list[RunRecord]
    measured_on: dict[str, Any]  # mode (device/host), serial, device facts, note
    pushed: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    profile_files: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)


def change(metric: Metric, before: Any, after: Any) -> str | None:
    """``4.20x smaller``, ``1.3x slower``, ``-0.84 pts``: what the deploy bought, in words."""
    if before is None or after is None:
        return None
    if metric.unit == "%":
        return f"{after - before:+.2f} pts"
    if before <= 0 or after <= 0:
        return None
    words = {"size_bytes": ("smaller", "larger"), "median_ms": ("faster", "slower"), "mean_ms": ("faster", "slower"),
             "params": ("fewer", "more"), "macs": ("fewer", "more")}
    good, bad = words.get(metric.key, ("less", "more"))
    ratio = before / after
    return f"{ratio:.2f}x {good}" if ratio >= 1 else f"{1 / ratio:.2f}x {bad}"


def run_figures(record: RunRecord | None) -> dict[str, Any]:
    """The compared figures of one profile run (memory: sampled VmHWM, else benchmark_model's footprint)."""
    if record is None:
        return {"status": "not run", "error": "no run recorded"}
    row = flat(record)
    mem = row["vm_hwm_mb"] if row["vm_hwm_mb"] is not None else row["mem_overall_mb"]
    figures = {"status": row["status"], "error": row["error"], "mem_mb": mem, "coverage": row["coverage"],
               "power_status": row["power_status"]}
    figures.update({m.key: row.get(m.key) for m in RUN_METRICS if m.key != "mem_mb"})
    return figures


def delegates(report: DeployReport) -> list[dict[str, Any]]:
    """Per delegate, in the order profiled: the figures of the before and the after run."""
    by: dict[str, dict[str, RunRecord]] = {}
    for record in report.records:
        role = next((r for r in ROLES if getattr(report, r).tflite and Path(record.model).stem == r), None)
        if role is not None:
            by.setdefault(record.delegate, {})[role] = record
    return [{"delegate": d, **{role: run_figures(runs.get(role)) for role in ROLES}} for d, runs in by.items()]


def comparison_rows(report: DeployReport) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for m in MODEL_METRICS:
        b, a = getattr(report.before, m.key), getattr(report.after, m.key)
        note = None
        if m.key == "top1":
            note = (f"LiteRT on the host, {report.after.eval_images or report.before.eval_images} "
                    f"{report.after.eval_split or report.before.eval_split or ''} images, same images both sides")
        rows.append({"group": "model", "metric": m.label, "key": m.key, "delegate": "", "unit": m.unit,
                     "before": b, "after": a, "change": change(m, b, a), "before_status": None, "after_status": None,
                     "note": note})
    for entry in delegates(report):
        statuses = {role: entry[role]["status"] for role in ROLES}
        note = _run_note(entry)
        for m in RUN_METRICS:
            b, a = entry["before"].get(m.key), entry["after"].get(m.key)
            if b is None and a is None and m is not RUN_METRICS[0]:
                continue  # not measured (host mode has no power rail, a failed run has no figures): one row says why
            rows.append({"group": "run", "metric": m.label, "key": m.key, "delegate": entry["delegate"],
                         "unit": m.unit, "before": b, "after": a, "change": change(m, b, a),
                         "before_status": statuses["before"], "after_status": statuses["after"], "note": note})
    return rows


def _run_note(entry: dict[str, Any]) -> str | None:
    """Why a run has no figures: one reason for both sides when they failed alike."""
    reasons = {role: entry[role].get("error") for role in ROLES if entry[role]["status"] != "ok"}
    if not reasons:
        return None
    if len(reasons) == 2 and len(set(reasons.values())) == 1:
        return f"both: {reasons['before']}"
    return "; ".join(f"{role}: {why}" for role, why in reasons.items())


def _metric(key: str) -> Metric:
    return next(m for m in MODEL_METRICS + RUN_METRICS if m.key == key)


def _cell(row: dict[str, Any], role: str) -> str:
    value, status = row[role], row[f"{role}_status"]
    if value is None:
        return status if status and status != "ok" else "—"
    return _metric(row["key"]).show(value)


def where(report: DeployReport) -> str:
    m = report.measured_on
    if m.get("mode") == "host":
        return "this computer's LiteRT interpreter (host), not a phone" + (f" ({m['note']})" if m.get("note") else "")
    info = m.get("device_info") or {}
    facts = ", ".join(str(info[k]) for k in ("model", "soc", "android") if info.get(k))
    return f"phone {m.get('serial')}" + (f" ({facts})" if facts else "")


def format_report(report: DeployReport) -> str:
    """The terminal view: one line per figure, before | after | change."""
    rows = [{**r, "b": _cell(r, "before"), "a": _cell(r, "after")} for r in comparison_rows(report)]
    columns = [Column("metric", "figure"), Column("delegate", "delegate"), Column("b", "before", str, ">"),
               Column("a", "after", str, ">"), Column("change", "change", str, ">"), Column("note", "note")]
    title = (f"deploy: {report.before.arch} ({report.before.format}) -> {report.after.arch} ({report.after.format}), "
             f"measured on {where(report)}")
    return format_table(rows, columns, title=title)


def document(report: DeployReport) -> dict[str, Any]:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "recipe": report.recipe, "run_dir": report.run_dir,
            "measured_on": report.measured_on, "before": report.before.to_dict(), "after": report.after.to_dict(),
            "delegates": delegates(report),
            "comparison": [{k: v for k, v in r.items() if k != "key"} for r in comparison_rows(report)],
            "pushed": report.pushed, "timings_s": report.timings, "profile": report.profile_files,
            "environment": report.environment}


def write_csv(report: DeployReport, path: Path) -> Path:
    return write_csv_rows(path, CSV_COLUMNS, comparison_rows(report))


def _model_bars(report: DeployReport, metric: Metric) -> str:
    sides = (("before", report.before), ("after", report.after))
    rows = [{"label": f"{role}: {side.arch} {side.format}", "delegate": "", "color": ROLE_COLORS[role],
             metric.key: getattr(side, metric.key)} for role, side in sides]
    return bar_svg(rows, metric.key, metric.shown_as or metric.unit, metric.label)


def _run_rows(report: DeployReport) -> list[dict[str, Any]]:
    rows = []
    for record in sorted(report.records, key=lambda r: (r.delegate, Path(r.model).stem != "before")):
        row = flat(record)
        row["label"] = f"{Path(record.model).stem} · {record.delegate}"
        row["mem"] = row["vm_hwm_mb"] if row["vm_hwm_mb"] is not None else row["mem_overall_mb"]
        rows.append(row)
    return rows


def _comparison_table(report: DeployReport) -> str:
    """Figure by figure; a failed run's reason is the note cell of its own row, wrapped to the page."""
    text = ("text num", "text num", "num", "num", "num", "text note")  # figures stay on one line, notes wrap
    head = "".join(f"<th class='{c}'>{h}</th>" for c, h in zip(text, ("figure", "delegate", "before", "after",
                                                                      "change", "note")))
    body = []
    for r in comparison_rows(report):
        bad = any(r[f"{role}_status"] not in (None, "ok") for role in ROLES)
        cells = (r["metric"], r["delegate"], _cell(r, "before"), _cell(r, "after"), r["change"] or "—",
                 r["note"] or "")
        body.append(f"<tr{' class=bad' if bad else ''}>" + "".join(
            f"<td class='{c}'>{html.escape(str(v))}</td>" for c, v in zip(text, cells)) + "</tr>")
    return (f"<div class='wide'><table class='report'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></div>")


def render_html(report: DeployReport) -> str:
    title = f"mobile-compress deploy: {Path(report.recipe).name}"
    parts = [page_head(title), f"<h1>{html.escape(title)}</h1>"]
    if report.measured_on.get("mode") == "host":
        parts.append(f"<p class='host'>Latency measured on {html.escape(where(report))}. Attach a phone and run "
                     "`mobile-compress deploy` for a phone's figures.</p>")
    else:
        parts.append(f"<p>Measured on {html.escape(where(report))}.</p>")
    parts.append(f"<p>Before: the recipe's starting model <code>{html.escape(report.before.checkpoint)}</code> "
                 f"({html.escape(report.before.origin)}). After: <code>{html.escape(str(report.after.tflite))}</code> "
                 f"({html.escape(report.after.origin)}).</p>")
    if report.pushed:
        pushed = report.pushed
        text = (f"pushed to {pushed['device_path']} on {pushed['serial']}" if pushed.get("ok")
                else f"not pushed: {pushed.get('error')}")
        parts.append(f"<p>Deployed model {html.escape(text)}.</p>")
    parts.append(_comparison_table(report))
    parts.append("<h2>Model</h2>")
    captions = {"top1": "Top-1 of the .tflite on the held-out images", "size_bytes": ".tflite size",
                "macs": "MACs per image", "params": "Parameters"}
    for key in ("top1", "size_bytes", "macs", "params"):
        svg = _model_bars(report, _metric(key))
        if svg:
            parts.append(f"<h3>{captions[key]}</h3>{svg}")
    runs = _run_rows(report)
    parts.append("<h2>On the device, per delegate</h2>")
    plots = [("Latency (ms): line min to max, box p5-p95 or p50-p90, tick median, dot mean",
              latency_svg(runs, "latency")),
             ("Memory (MB)", bar_svg(runs, "mem", "MB", "memory")),
             ("Power above idle (mW)", bar_svg(runs, "power_mw", "mW", "power")),
             ("Energy per inference (mJ)", bar_svg(runs, "mj_per_inference", "mJ", "energy"))]
    for caption, svg in plots:
        if svg:
            parts.append(f"<h3>{html.escape(caption)}</h3>{svg}")
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        items = "".join(f"<li>{html.escape(r['label'])}: {html.escape(r['status'])}, {html.escape(r['error'] or '')}"
                        "</li>" for r in failed)
        parts.append(f"<h3>Runs that did not complete</h3><ul>{items}</ul>")
    if report.profile_files.get("html"):
        parts.append(f"<p>Every run in detail: <a href='{html.escape(report.profile_files['html'])}'>"
                     f"{html.escape(report.profile_files['html'])}</a></p>")
    if report.timings:
        spent = ", ".join(f"{k} {format_number(v, 's')}" for k, v in report.timings.items())
        parts.append("<p>Wall time of the last deploy call: " + html.escape(spent)
                     + "</p>")
    parts.append(environment_line(report.environment))
    parts.append("</body></html>")
    return "\n".join(parts)


@dataclass
class ReportFiles:
    json: Path
    csv: Path
    html: Path


def write_report(report: DeployReport, out_dir: Path) -> ReportFiles:
    """deploy.json, deploy.csv and deploy.html in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out_dir / "deploy.json", out_dir / "deploy.csv", out_dir / "deploy.html")
    write_json(files.json, document(report))
    write_csv(report, files.csv)
    write_text(files.html, render_html(report))
    return files
