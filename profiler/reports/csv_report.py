"""The runs as CSV, one row per model x delegate x device, for spreadsheets."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from profiler.reports.rows import COLUMNS, flat
from profiler.results import RunRecord


def write_csv(records: Iterable[RunRecord], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in flat(record).items()})
    return path
