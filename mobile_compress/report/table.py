"""Plain-text tables for the terminal, aligned and free of dependencies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from mobile_compress.report.terminal import printable


@dataclass(frozen=True)
class Column:
    """One column: the row key it reads, its header, and how a value is shown."""

    key: str
    header: str
    fmt: Callable[[Any], str] = str
    align: str = "<"  # "<" for text, ">" for numbers


def format_table(rows: Iterable[Mapping[str, Any]], columns: list[Column], title: str | None = None) -> str:
    # Cells carry model names and device output: shown with their control characters escaped.
    cells = [[("" if row.get(c.key) is None else printable(c.fmt(row[c.key]))) for c in columns] for row in rows]
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(f"{v:{c.align}{w}}" for v, c, w in zip(values, columns, widths)).rstrip()

    out = []
    if title:
        out.append(printable(title))
    out.append(line([c.header for c in columns]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)
