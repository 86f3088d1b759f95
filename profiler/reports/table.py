"""The terminal view: one aligned row per run, figures at their unit's precision (``mobile_compress.report``)."""
from __future__ import annotations

from typing import Iterable

from mobile_compress.report import Column, format_number, format_table
from profiler.reports.rows import flat, refused_note
from profiler.results import RunRecord


def _ci(row: dict) -> str | None:
    if row["ci95_low_ms"] is None or row["ci95_high_ms"] is None:
        return None
    return f"{format_number(row['ci95_low_ms'], 'ms', False)}-{format_number(row['ci95_high_ms'], 'ms', False)}"


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
               Column("status", "status"), Column("n", "n", align=">"),
               Column("mean_ms", "mean ms", align=">", unit="ms"), Column("std_ms", "std", align=">", unit="ms"),
               Column("median_ms", "p50 ms", align=">", unit="ms"), Column("ci", "95% CI", align=">"),
               Column("init_ms", "init ms", align=">", unit="ms"), Column("mem", "mem MB", align=">", unit="MB"),
               Column("power_mw", "mW>idle", align=">", unit="mW"),
               Column("mj_per_inference", "mJ/inf", align=">", unit="mJ"),
               Column("thermal", "thermal"), Column("coverage", "coverage / error")]
    return format_table(rows, columns, title=title)
