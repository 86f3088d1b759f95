"""Plain-text tables for the terminal, aligned and free of dependencies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from mobile_compress.report.numbers import format_number
from mobile_compress.report.terminal import printable


@dataclass(frozen=True)
class Column:
    """One column: the row key it reads, its header, and how a value is shown.

    With ``unit`` (``"ms"``, ``"MB"``, ``"%"`` ...), numbers are shown at that unit's precision
    (``mobile_compress.report.numbers``), the unit itself left to the header. A float in a column
    without its own ``fmt`` is never shown as its repr.
    """

    key: str
    header: str
    fmt: Callable[[Any], str] = str
    align: str = "<"  # "<" for text, ">" for numbers
    unit: str | None = None

    def show(self, value: Any) -> str:
        if self.fmt is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.unit is not None or isinstance(value, float):
                return format_number(value, self.unit, with_unit=False)
        return self.fmt(value)


def format_table(rows: Iterable[Mapping[str, Any]], columns: list[Column], title: str | None = None) -> str:
    # Cells carry model names and device output: shown with their control characters escaped.
    cells = [[("" if row.get(c.key) is None else printable(c.show(row[c.key]))) for c in columns] for row in rows]
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
