"""``profile --from-log``: the same figures from a benchmark_model log a user captured by hand."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mobile_compress.errors import UserError
from mobile_compress.report import Column, format_table
from profiler.measure import latency_from_output
from profiler.parse import parse_log


def report_log(path: Path, as_json: bool = False) -> str:
    """A table (or JSON) with one row per run found in the log."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise UserError(f"cannot read log file {path}: {err.strerror}", hint="give the path of a saved "
                        "benchmark_model output (adb shell ... > log.txt)") from err
    runs = parse_log(text)
    if not runs:
        raise UserError(f"{path} holds no benchmark_model output",
                        hint="save the whole output of `adb shell .../benchmark_model --graph=...` to a file")
    rows = []
    for index, run in enumerate(runs, 1):
        lat = latency_from_output(run)
        ci = (f"{lat.ci95_low_ms:.3f}-{lat.ci95_high_ms:.3f}" if lat.ci95_low_ms is not None else None)
        rows.append({"run": index, "ci95": ci, "status": "ok" if run.complete else ("failed" if run.failed else "incomplete"),
                     **lat.to_dict(), "mem_init_mb": run.memory_init_mb, "mem_overall_mb": run.memory_overall_mb,
                     "mem_kind": run.memory_kind, "periodic_peak_mb": run.periodic_peak_mb,
                     "coverage": "; ".join(c.describe() for c in run.coverage),
                     "errors": " | ".join(run.errors[-2:]),
                     "slowest_ops": [asdict(r) for r in run.op_profile.slowest(5)] if run.op_profile else []})
    if as_json:
        return json.dumps({"log": str(path), "runs": rows}, indent=2)
    ms = lambda v: f"{v:.3f}"  # noqa: E731
    columns = [Column("run", "run", str, ">"), Column("status", "status"), Column("n", "n", str, ">"),
               Column("init_ms", "init ms", ms, ">"), Column("first_ms", "first ms", ms, ">"),
               Column("warmup_ms", "warmup ms", ms, ">"), Column("mean_ms", "mean ms", ms, ">"),
               Column("std_ms", "std", ms, ">"), Column("ci95", "95% CI", str, ">"), Column("min_ms", "min", ms, ">"), Column("max_ms", "max", ms, ">"),
               Column("median_ms", "median", ms, ">"), Column("mem_overall_mb", "mem MB", lambda v: f"{v:.1f}", ">"),
               Column("coverage", "coverage"), Column("errors", "errors")]
    table = format_table(rows, columns, title=f"benchmark_model log {path}")
    ops = [r for r in rows if r["slowest_ops"]]
    for row in ops:
        table += f"\nslowest operators, run {row['run']}:"
        for op in row["slowest_ops"]:
            table += f"\n  {op['avg_ms']:9.3f} ms {op['percent']:6.2f}%  {op['node_type']}  {op['name']}"
    return table
