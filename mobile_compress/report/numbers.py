"""How a number of each unit is shown, in every view people read: terminal tables and HTML reports.

One place decides the precision: latency in ms with three or four significant digits,
memory with one decimal, power in whole mW, percentages with two decimals. A float is
never shown as its repr (``23.54010009765625``). Fields read from JSON (device facts,
the environment) are named by their key, and the key's suffix names the unit
(``vm_hwm_mb``, ``memory_gib``, ``temperature_decic``): ``format_field`` uses it. CSV and
JSON keep the raw values; they are for programs.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from mobile_compress.counting import format_count


@dataclass(frozen=True)
class Unit:
    """Significant digits wanted, the most decimals allowed, and the text after the number."""

    significant: int
    max_decimals: int
    suffix: str


UNITS: dict[str, Unit] = {
    "ms": Unit(4, 3, "ms"),
    "s": Unit(3, 1, "s"),
    "MB": Unit(4, 1, "MB"),
    "mW": Unit(1, 0, "mW"),
    "mV": Unit(1, 0, "mV"),
    "mJ": Unit(4, 3, "mJ"),
    "mJ/inference": Unit(4, 3, "mJ/inference"),
    "%": Unit(4, 2, "%"),
    "Hz": Unit(3, 1, "Hz"),
    "GHz": Unit(3, 2, "GHz"),
    "°C": Unit(3, 1, "°C"),
    "": Unit(4, 3, ""),
}
BYTE_STEPS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
SMALL_DECIMALS = 4  # below 1, three significant digits, but never more decimals than this
DASH = "–"

# Key suffixes in JSON facts -> (unit, factor that turns the stored value into that unit).
SUFFIX_UNITS: tuple[tuple[str, str, float], ...] = (
    ("_ms", "ms", 1.0), ("_s", "s", 1.0), ("_mb", "MB", 1.0), ("_mw", "mW", 1.0), ("_mv", "mV", 1.0),
    ("_mj", "mJ", 1.0), ("_hz", "Hz", 1.0), ("_khz", "GHz", 1e-6), ("_c", "°C", 1.0), ("_decic", "°C", 0.1),
    ("_pct", "%", 1.0), ("percent", "%", 1.0), ("_gib", "GiB", 1.0), ("_mib", "MiB", 1.0), ("_bytes", "bytes", 1.0),
)


def _decimals(value: float, unit: Unit) -> int:
    if value == 0 or not math.isfinite(value):
        return min(1, unit.max_decimals)
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < 0:
        return min(max(unit.max_decimals, 2 - magnitude), SMALL_DECIMALS)
    return max(0, min(unit.max_decimals, unit.significant - 1 - magnitude))


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``; ``25275465728`` -> ``23.5 GiB``: the largest binary unit that keeps 1 or more."""
    for name, size in BYTE_STEPS:
        if abs(n) >= size:
            return f"{n / size:.1f} {name}"
    return f"{n:.0f} B"


def format_number(value: float, unit: str | None = None, with_unit: bool = True) -> str:
    """``value`` in ``unit`` at that unit's precision: ``format_number(12.5, "ms")`` -> ``12.50 ms``.

    Units: the keys of ``UNITS``, ``bytes``/``KiB``/``MiB``/``GiB`` (shown in the largest binary unit
    that fits), ``count`` (``3.50 M``). Integers keep every digit; a bool is ``yes``/``no``.
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    unit = unit or ""
    if unit in ("bytes", "KiB", "MiB", "GiB"):
        scale = 1 if unit == "bytes" else dict(BYTE_STEPS)[unit]
        return format_bytes(value * scale)
    if unit == "count":
        return format_count(value)
    spec = UNITS.get(unit, Unit(4, 3, unit))
    if isinstance(value, int) or not math.isfinite(value):
        text = str(value)
    else:
        text = f"{value:.{_decimals(value, spec)}f}"
        if float(text) == 0 and value != 0:  # tiny, not zero: keep its digits
            text = f"{value:.2g}"
    return f"{text} {spec.suffix}" if with_unit and spec.suffix else text


def unit_of(key: str) -> tuple[str | None, float]:
    """The unit a JSON key's suffix names (``vm_hwm_mb`` -> MB), and the factor to it; (None, 1) if none."""
    lowered = key.lower()
    for suffix, unit, factor in SUFFIX_UNITS:
        if lowered.endswith(suffix):
            return unit, factor
    return None, 1.0


def field_label(key: str) -> str:
    """A JSON key as words, its unit suffix dropped (the value carries the unit): ``max_freq_khz`` -> ``max freq``."""
    suffix = next((s for s, _, _ in SUFFIX_UNITS if key.lower().endswith(s)), "")
    return (key[: len(key) - len(suffix)].rstrip("_") or key).replace("_", " ")


def _indexed(value: Any) -> bool:
    """A dict keyed by index (``{"0": ..., "1": ...}``: one value per CPU core)."""
    return isinstance(value, Mapping) and bool(value) and all(isinstance(k, str) and k.isdigit() for k in value)


def _per_index(values: Mapping[str, Any], unit: str | None, factor: float) -> str:
    """``{"0": 1800000, "1": 1800000, "4": 2400000}`` (per core) -> ``0-1: 1.80 GHz; 4: 2.40 GHz``."""
    groups: dict[str, list[int]] = {}
    for index, value in sorted(values.items(), key=lambda kv: int(kv[0])):
        groups.setdefault(format_value(value, unit, factor), []).append(int(index))
    parts = []
    for text, indices in groups.items():
        spans: list[list[int]] = []
        for i in indices:
            if spans and i == spans[-1][1] + 1:
                spans[-1][1] = i
            else:
                spans.append([i, i])
        parts.append(",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) + f": {text}")
    return "; ".join(parts)


def format_value(value: Any, unit: str | None = None, factor: float = 1.0) -> str:
    """Any value from a record or JSON, readable: numbers in ``unit``, dicts as ``key value`` lists."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        scaled = value * factor if factor != 1.0 else value
        return format_number(scaled, unit)
    if _indexed(value):
        return _per_index(value, unit, factor)
    if isinstance(value, Mapping):
        return format_fields(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, unit, factor) for v in value)
    return str(value)


def format_field(key: str, value: Any) -> str:
    """A fact stored under ``key``, in the unit its name gives: ``("memory_gib", 23.54...)`` -> ``23.5 GiB``."""
    unit, factor = unit_of(key)
    return format_value(value, unit, factor)


def format_fields(fields: Mapping[str, Any]) -> str:
    """``key value, ...`` for the fields that say something (None, empty and false flags are left out)."""
    parts = []
    for key, value in fields.items():
        if value is None or value is False or value in ("", {}, []):
            continue
        name, shown = field_label(key), format_field(key, value)
        nested = isinstance(value, Mapping) and not _indexed(value)
        parts.append(name if value is True else f"{name} ({shown})" if nested else f"{name} {shown}")
    return ", ".join(parts)


RAW_FLOAT = re.compile(r"\d\.\d{5,}")  # what no report may show: a float's repr, 5 or more decimals
