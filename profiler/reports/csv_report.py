"""The runs as CSV, one row per model x delegate x device, for spreadsheets (formula-safe, written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mobile_compress.report import write_csv_rows
from profiler.reports.rows import COLUMNS, flat
from profiler.results import RunRecord


def write_csv(records: Iterable[RunRecord], path: Path) -> Path:
    return write_csv_rows(path, COLUMNS, (flat(record) for record in records))
