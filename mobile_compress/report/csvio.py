"""CSV for spreadsheets, safe to open: no cell from a model name or a device becomes a formula.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a
tab or carriage return) as a formula, so a model file named ``=HYPERLINK(...)`` or a
device property ``-2+cmd|...`` would act when the report is opened (OWASP "CSV Injection").
Such text cells get a leading ``'``, which spreadsheets show as plain text. Numbers stay
numbers, and so does text that is just a number (``-3.5``): neither is a formula.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mobile_compress.report.atomic import atomic_open

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: None as empty, text that a spreadsheet would run quoted with ``'``."""
    if value is None:
        return ""
    if isinstance(value, (int, float)):  # bool is an int: written as True/False, not a formula
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv_rows(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """One header line of ``columns`` then a line per row (keys not in ``columns`` ignored), atomically."""
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([safe_cell(c) for c in columns])
        for row in rows:
            writer.writerow([safe_cell(row.get(c)) for c in columns])
    return Path(path)
