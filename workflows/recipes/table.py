"""The stage table: one row per artifact, so the user sees what each stage bought."""
from __future__ import annotations

from typing import Any, Callable

from mobile_compress.counting import format_count
from mobile_compress.report import Column, format_table

DASH = "—"

#: (row key, header, how a value is shown, alignment); a figure that does not apply shows a dash.
FIELDS: list[tuple[str, str, Callable[[Any], str], str]] = [
    ("stage", "stage", str, "<"),
    ("artifact", "artifact", str, "<"),
    ("top1", "top-1 %", lambda v: f"{v:.2f}", ">"),
    ("eval_images", "on images", str, ">"),
    ("params", "params", format_count, ">"),
    ("macs", "MACs", format_count, ">"),
    ("size_bytes", "size", lambda v: f"{v / 1024:,.0f} KiB", ">"),
    ("tflite_ms", "TFLite host ms", lambda v: f"{v:.2f}", ">"),
    ("torch_ms", "PyTorch CPU ms", lambda v: f"{v:.2f}", ">"),
    ("profiled_ms", "profiled ms", lambda v: f"{v:.2f}", ">"),
]


def stage_table(rows: list[dict[str, Any]]) -> str:
    shown = [{key: DASH if r.get(key) is None else fmt(r[key]) for key, _, fmt, _ in FIELDS} for r in rows]
    columns = [Column(key, header, str, align) for key, header, _, align in FIELDS]
    return format_table(shown, columns, title="stage table (latency: batch 1, one thread, median; PyTorch CPU ms "
                                              "is the host's PyTorch, not a phone; profiled ms: the profile stage's "
                                              "device or host)")
