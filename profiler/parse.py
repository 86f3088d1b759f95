"""Reading TFLite ``benchmark_model`` output, in every form it has been printed since 2018.

One log may hold several runs (batch scripts concatenate them); ``parse_log`` splits them at
``STARTING!`` and ``parse_output`` reads one. Each fact about the text format lives here once:
the level prefix, the ``count=`` statistics line, the timing summary (old and new wording),
the memory lines. Delegate coverage and op-profiling tables have their own modules.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from profiler.coverage import DelegateCoverage, parse_coverage
from profiler.logline import NUMBER, is_error, strip_level
from profiler.op_profile import OpProfile, parse_op_profile

# TFLite's Stat prints "count=N curr=C" (plus "(all same)" when N > 1) when every sample is equal.
_STATS_LINE = re.compile(r"^count=(\d+)((?:\s+\w+=" + NUMBER + r")*)\s*(\(all same\))?\s*$")
_KEY_VALUE = re.compile(r"(\w+)=(" + NUMBER + r")")
_RUNNING = re.compile(r"^Running benchmark for (?:at least )?(\d+) iterations")
_SUMMARY = re.compile(r"(?:Average inference timings|Inference timings) in us:\s*(.*)$")
_SUMMARY_LABELS = {"init": "init_us", "first inference": "first_us", "warmup (avg)": "warmup_avg_us",
                   "warmup": "warmup_avg_us", "inference (avg)": "inference_avg_us", "inference": "inference_avg_us",
                   "no stats": "inference_avg_us"}  # "no stats" is what TF 1.12-1.13 printed for the average
_MEMORY = re.compile(r"^(Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                     r"init=(" + NUMBER + r") overall=(" + NUMBER + r")")
_PERIODIC_PEAK = re.compile(r"^Overall peak memory footprint \(MB\) via periodic monitoring: (" + NUMBER + ")")
_MODEL_SIZE = re.compile(r"^The input model file size \(MB\): (" + NUMBER + ")")
_INIT_SESSION = re.compile(r"^Initialized session in (" + NUMBER + r")ms")
_PARAM = re.compile(r"^([A-Za-z#][^:\[\]]*?)\s*:\s*\[(.*)\]\s*$")
_FAILED = re.compile(r"^(Benchmarking failed\.?|Failed to (?:apply|invoke|allocate|construct|mmap|load|create|init).*"
                     r"|.*\bfailed to (?:prepare|invoke)\b.*)$")


@dataclass
class RunStats:
    """One ``count=N ...`` line: statistics of a set of runs, in microseconds."""

    count: int
    curr_us: float | None = None
    first_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None

    def __post_init__(self) -> None:
        # `count=N curr=C` carries no other fields because every sample equals C.
        if self.count >= 1 and self.curr_us is not None and self.avg_us is None and self.min_us is None:
            for name in ("first_us", "min_us", "max_us", "avg_us", "p5_us", "median_us", "p95_us"):
                if getattr(self, name) is None:
                    setattr(self, name, self.curr_us)
            if self.std_us is None:
                self.std_us = 0.0


@dataclass
class BenchmarkOutput:
    """Everything one benchmark_model run printed that we use."""

    warmup: RunStats | None = None
    inference: RunStats | None = None
    init_us: float | None = None
    first_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    memory_kind: str | None = None  # "peak" (TF <= 2.4 wording) or "delta" (later wording); same measurement
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    periodic_peak_mb: float | None = None
    model_size_mb: float | None = None
    init_session_ms: float | None = None
    params: dict[str, str] = field(default_factory=dict)
    coverage: list[DelegateCoverage] = field(default_factory=list)
    op_profile: OpProfile | None = None
    errors: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def complete(self) -> bool:
        """The run reached its timing summary (a cut-off or crashed run did not)."""
        return self.inference_avg_us is not None or (self.inference is not None and not self.failed)

    @property
    def has_content(self) -> bool:
        return bool(self.warmup or self.inference or self.inference_avg_us is not None or self.errors
                    or self.coverage or self.params or self.init_session_ms is not None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["complete"] = self.complete
        return data


def parse_stats_line(message: str) -> RunStats | None:
    """``count=50 first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]``."""
    match = _STATS_LINE.match(message)
    if not match:
        return None
    values = {k: float(v) for k, v in _KEY_VALUE.findall(match.group(2))}
    known = {"curr", "first", "min", "max", "avg", "std", "p5", "median", "p95"}
    return RunStats(count=int(match.group(1)), **{f"{k}_us": v for k, v in values.items() if k in known})


def split_runs(text: str) -> list[str]:
    """The log cut at each ``STARTING!`` (a batch log holds several runs)."""
    chunks: list[list[str]] = [[]]
    for line in text.splitlines():
        if strip_level(line) == "STARTING!" and any(strip_level(l) for l in chunks[-1]):
            chunks.append([])
        chunks[-1].append(line)
    return ["\n".join(c) for c in chunks if any(strip_level(l) for l in c)]


def parse_log(text: str) -> list[BenchmarkOutput]:
    """Every run in a log, in order (text before the first run, such as a shell prompt, is skipped)."""
    return [out for out in map(parse_output, split_runs(text)) if out.has_content]


def parse_output(text: str) -> BenchmarkOutput:
    """One run's output (stdout and stderr together)."""
    out = BenchmarkOutput()
    lines = text.splitlines()
    stats: list[tuple[int, RunStats]] = []  # (how many "Running benchmark" lines came before, stats)
    markers = 0
    profile_start = None
    for index, raw in enumerate(lines):
        message = strip_level(raw)
        if not message:
            continue
        if message.startswith(("Profiling Info for Benchmark Initialization", "Operator-wise Profiling Info",
                               "============================== ")):
            profile_start = index if profile_start is None else profile_start
            continue
        if profile_start is not None:
            continue  # the op-profiling tables have their own "count=" lines; op_profile reads them
        if _RUNNING.match(message):
            markers += 1
        elif (parsed := parse_stats_line(message)) is not None:
            stats.append((markers, parsed))
        elif match := _SUMMARY.search(message):
            _read_summary(match.group(1), out)
        elif match := _MEMORY.match(message):
            out.memory_kind = "peak" if match.group(1).startswith("Peak") else "delta"
            out.memory_init_mb, out.memory_overall_mb = float(match.group(2)), float(match.group(3))
        elif match := _PERIODIC_PEAK.match(message):
            out.periodic_peak_mb = float(match.group(1))
        elif match := _MODEL_SIZE.match(message):
            out.model_size_mb = float(match.group(1))
        elif match := _INIT_SESSION.match(message):
            out.init_session_ms = float(match.group(1))
        elif match := _PARAM.match(message):
            out.params[match.group(1).strip()] = match.group(2)
        if is_error(raw):
            out.errors.append(message)
        elif _FAILED.match(message):
            out.errors.append(message)
            out.failed = True
    _assign_stats(stats, out)
    out.coverage = parse_coverage(lines)
    if any(c.state == "failed" for c in out.coverage):
        out.failed = True
    if profile_start is not None:
        out.op_profile = parse_op_profile("\n".join(lines[profile_start:]))
    if out.init_us is None and out.init_session_ms is not None:
        out.init_us = out.init_session_ms * 1e3
    return out


def _read_summary(body: str, out: BenchmarkOutput) -> None:
    for part in body.split(","):
        label, _, value = part.partition(":")
        key = _SUMMARY_LABELS.get(label.strip().lower())
        if key and re.fullmatch(NUMBER, value.strip()):
            setattr(out, key, float(value.strip()))


def _assign_stats(stats: list[tuple[int, RunStats]], out: BenchmarkOutput) -> None:
    """The first "Running benchmark" block is the warm-up, the second the timed runs.

    Without those lines (a log's tail), the last statistics line is the timed runs and
    the one before it the warm-up.
    """
    if any(m for m, _ in stats):
        for marker, s in stats:
            if marker == 1 and out.warmup is None:
                out.warmup = s
            elif marker >= 2 and out.inference is None:
                out.inference = s
        return
    if stats:
        out.inference = stats[-1][1]
        if len(stats) > 1:
            out.warmup = stats[-2][1]
