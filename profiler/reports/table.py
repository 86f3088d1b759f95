"""The terminal view: one aligned row per run, figures with their units."""
from __future__ import annotations

from typing import Iterable

from mobile_compress.report import Column, format_table
from profiler.reports.rows import flat, refused_note
from profiler.results import RunRecord


def _num(digits: int):
    return lambda v: f"{v:.{digits}f}"


def _ci(row: dict) -> str | None:
    if row["ci95_low_ms"] is None:
        return None
    return f"{row['ci95_low_ms']:.3g}-{row['ci95_high_ms']:.3g}"


def format_runs(records: Iterable[RunRecord], title: str | None = "profile") -> str:
    rows = []
    for record in records:
        row = flat(record)
        row["ci"] = _ci(row)
        row["mem"] = row["vm_hwm_mb"] if row["vm_hwm_mb"] is not None else row["mem_overall_mb"]
        row["thermal"] = (f"{row['thermal_before']}->{row['thermal_after']}"
                          if row["thermal_before"] or row["thermal_after"] else None)
        if row["status"] != "ok":
            row["coverage"] = f"{row['coverage']} {row['error'] or ''}".strip()
        elif row["power_mw"] is None and row["power_status"] and row["mode"] == "device":
            row["coverage"] = f"{row['coverage']} [power {row['power_status']}]".strip()
        if record.refused_files:
            row["coverage"] = f"{row['coverage']} [{refused_note(record)}]".strip()
        rows.append(row)
    columns = [Column("device", "device"), Column("model", "model"), Column("delegate", "delegate"),
               Column("status", "status"), Column("n", "n", str, ">"),
               Column("mean_ms", "mean ms", _num(3), ">"), Column("std_ms", "std", _num(3), ">"),
               Column("median_ms", "p50 ms", _num(3), ">"), Column("ci", "95% CI", str, ">"),
               Column("init_ms", "init ms", _num(1), ">"), Column("mem", "mem MB", _num(1), ">"),
               Column("power_mw", "mW>idle", _num(0), ">"), Column("mj_per_inference", "mJ/inf", _num(3), ">"),
               Column("thermal", "thermal"), Column("coverage", "coverage / error")]
    return format_table(rows, columns, title=title)
