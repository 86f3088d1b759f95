"""Per-operator tables from ``--enable_op_profiling`` and ``--profiling_output_csv_file``.

TFLite's StatsCalculator prints each table after a ``==== Title ====`` line, either as
tab-separated, space-padded columns or (``format_as_csv``) as ``a, b, c`` rows. Node types
and names may contain spaces ("Vx Delegate") and names may contain commas, so rows are read
from the fixed numeric columns in the middle, not by splitting blindly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from profiler.logline import NUMBER, strip_level

_TITLE = re.compile(r"^=+ (.+?) =+$")
_OP_ROW = re.compile(r"^\s*(?P<type>\S.*?)\s+(?P<start>" + NUMBER + r")\s+(?P<first>" + NUMBER + r")\s+(?P<avg>"
                     + NUMBER + r")\s+(?P<pct>" + NUMBER + r")%\s+(?P<cdf>" + NUMBER + r")%\s+(?P<mem>" + NUMBER
                     + r")\s+(?P<times>\d+)\s+(?P<name>.*?)\s*$")
_TYPE_ROW = re.compile(r"^\s*(?P<type>\S.*?)\s+(?P<count>\d+)\s+(?P<avg>" + NUMBER + r")\s+(?P<pct>" + NUMBER
                       + r")%\s+(?P<cdf>" + NUMBER + r")%\s+(?P<mem>" + NUMBER + r")\s+(?P<times>\d+)\s*$")
_SECTION_INIT = "Profiling Info for Benchmark Initialization"
_SECTION_RUNS = "Operator-wise Profiling Info for Regular Benchmark Runs"


@dataclass
class OpRow:
    """One operator (node) of the run-order or top-by-time table; times in ms."""

    node_type: str
    start_ms: float
    first_ms: float
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int
    name: str


@dataclass
class TypeRow:
    """One line of "Summary by node type"."""

    node_type: str
    count: int
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int


@dataclass
class OpTables:
    """The tables of one section (initialisation, or the regular runs)."""

    run_order: list[OpRow] = field(default_factory=list)
    top_by_time: list[OpRow] = field(default_factory=list)
    by_type: list[TypeRow] = field(default_factory=list)
    nodes_executed: int | None = None


@dataclass
class OpProfile:
    init: OpTables = field(default_factory=OpTables)
    runs: OpTables = field(default_factory=OpTables)
    layout: str = "table"  # "table" (tab or space padded) or "csv"

    def slowest(self, n: int = 5) -> list[OpRow]:
        return sorted(self.runs.run_order, key=lambda r: r.avg_ms, reverse=True)[:n]


def parse_op_profile(text: str) -> OpProfile:
    """Both sections of a log's op-profiling output, or a CSV file's tables (then they count as the runs)."""
    profile = OpProfile()
    tables = profile.runs  # a CSV file holds only the regular runs and has no section line
    table = None
    for raw in text.splitlines():
        message = strip_level(raw)
        if message.startswith(_SECTION_INIT):
            tables = profile.init
        elif message.startswith(_SECTION_RUNS):
            tables = profile.runs
        elif match := _TITLE.match(message):
            table = match.group(1)
        elif message.startswith("Number of nodes executed:"):
            tables.nodes_executed = int(message.rsplit(":", 1)[1])
        elif message.lower().startswith(("node type,", "[node type]")):
            if "," in message:
                profile.layout = "csv"
        elif table and message:
            _read_row(message, table, tables, profile.layout == "csv")
    return profile


def _read_row(message: str, table: str, tables: OpTables, csv: bool) -> None:
    if table == "Summary by node type":
        values = _csv(message, 7) if csv else _TYPE_ROW.match(message)
        if values is None:
            return
        v = values if csv else values.groupdict()
        tables.by_type.append(TypeRow(v["type"], int(v["count"]), float(v["avg"]), _pct(v["pct"]), _pct(v["cdf"]),
                                      float(v["mem"]), int(v["times"])))
        return
    target = {"Run Order": tables.run_order, "Top by Computation Time": tables.top_by_time}.get(table)
    if target is None:
        return
    values = _csv(message, 9) if csv else _OP_ROW.match(message)
    if values is None:
        return
    v = values if csv else values.groupdict()
    target.append(OpRow(v["type"], float(v["start"]), float(v["first"]), float(v["avg"]), _pct(v["pct"]),
                        _pct(v["cdf"]), float(v["mem"]), int(v["times"]), v["name"]))


def _csv(message: str, columns: int) -> dict[str, str] | None:
    """A CSV row; the last column (the node name) keeps its own commas."""
    parts = [p.strip() for p in message.split(",", columns - 1)]
    if len(parts) != columns:
        return None
    keys = (["type", "start", "first", "avg", "pct", "cdf", "mem", "times", "name"] if columns == 9
            else ["type", "count", "avg", "pct", "cdf", "mem", "times"])
    values = dict(zip(keys, parts))
    numeric = [k for k in keys if k not in ("type", "name")]
    if not all(re.fullmatch(NUMBER + "%?", values[k]) for k in numeric):
        return None
    return values


def _pct(text: str) -> float:
    return float(text.rstrip("%"))
