"""From what a run left behind to the figures we report: latency, memory, power, thermals.

Latency comes from benchmark_model's own statistics line (n, mean, std, min, max and, in
newer builds, p5/median/p95) or, in host mode, from per-run samples, which add
p50/p90/p99 and a 95% confidence interval of the mean. Memory combines benchmark_model's
footprint lines with VmHWM/VmRSS sampled from /proc by the runner.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from profiler.parse import BenchmarkOutput


@dataclass
class Latency:
    """Milliseconds. ``source`` says where the figures came from."""

    source: str  # "benchmark_model statistics" or "per-run samples"
    n: int | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p5_ms: float | None = None  # as benchmark_model reported them (newer builds)
    median_ms: float | None = None
    p95_ms: float | None = None
    p50_ms: float | None = None  # from per-run samples only
    p90_ms: float | None = None
    p99_ms: float | None = None
    ci95_low_ms: float | None = None
    ci95_high_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1e3


def mean_ci95(mean: float, std: float, n: int) -> tuple[float, float] | None:
    """Student-t 95% interval of the mean (std is the sample's standard deviation)."""
    if n < 2:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def latency_from_output(out: BenchmarkOutput) -> Latency:
    """The figures benchmark_model printed; the CI uses its n, mean and std (no per-run samples exist)."""
    runs = out.inference
    lat = Latency("benchmark_model statistics", init_ms=_ms(out.init_us), first_ms=_ms(out.first_us),
                  warmup_ms=_ms(out.warmup_avg_us if out.warmup_avg_us is not None
                                else (out.warmup.avg_us if out.warmup else None)))
    if out.first_us is None and out.warmup is not None:
        lat.first_ms = _ms(out.warmup.first_us)
    if runs is not None:
        lat.n = runs.count
        lat.mean_ms, lat.std_ms = _ms(runs.avg_us), _ms(runs.std_us)
        lat.min_ms, lat.max_ms = _ms(runs.min_us), _ms(runs.max_us)
        lat.p5_ms, lat.median_ms, lat.p95_ms = _ms(runs.p5_us), _ms(runs.median_us), _ms(runs.p95_us)
    if lat.mean_ms is None:
        lat.mean_ms = _ms(out.inference_avg_us)
    if lat.n and lat.mean_ms is not None and lat.std_ms is not None:
        ci = mean_ci95(lat.mean_ms, lat.std_ms, lat.n)
        if ci:
            lat.ci95_low_ms, lat.ci95_high_ms = ci
    return lat


def latency_from_samples(samples_ms: Sequence[float], *, init_ms: float | None = None, first_ms: float | None = None,
                         warmup_ms: float | None = None) -> Latency:
    """Full statistics from per-run samples (host mode)."""
    x = np.asarray(samples_ms, dtype=float)
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    lat = Latency("per-run samples", n=len(x), init_ms=init_ms, first_ms=first_ms, warmup_ms=warmup_ms,
                  mean_ms=float(x.mean()), std_ms=std, min_ms=float(x.min()), max_ms=float(x.max()),
                  median_ms=p50, p50_ms=p50, p90_ms=p90, p99_ms=p99)
    ci = mean_ci95(lat.mean_ms, std, len(x))
    if ci:
        lat.ci95_low_ms, lat.ci95_high_ms = ci
    return lat


@dataclass
class Memory:
    """Megabytes (MiB, as benchmark_model's "MB")."""

    footprint_kind: str | None = None  # "delta" or "peak": the wording of benchmark_model's line
    footprint_init_mb: float | None = None
    footprint_overall_mb: float | None = None
    periodic_peak_mb: float | None = None  # --report_peak_memory_footprint
    vm_hwm_mb: float | None = None  # highest VmHWM the runner sampled from /proc/PID/status
    vm_rss_max_mb: float | None = None
    samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_mem_samples(path: Path) -> list[tuple[float, float | None, float | None]]:
    """The runner's ``uptime VmHWM_kB VmRSS_kB`` lines (NA where the process was already gone)."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            rows.append((float(parts[0]), _kb(parts[1]), _kb(parts[2])))
        except ValueError:
            continue
    return rows


def _kb(text: str) -> float | None:
    return None if text == "NA" else float(text)


def memory_from(out: BenchmarkOutput, mem_samples: Sequence[tuple[float, float | None, float | None]]) -> Memory:
    hwm = [h for _, h, _ in mem_samples if h is not None]
    rss = [r for _, _, r in mem_samples if r is not None]
    return Memory(footprint_kind=out.memory_kind, footprint_init_mb=out.memory_init_mb,
                  footprint_overall_mb=out.memory_overall_mb, periodic_peak_mb=out.periodic_peak_mb,
                  vm_hwm_mb=max(hwm) / 1024 if hwm else None, vm_rss_max_mb=max(rss) / 1024 if rss else None,
                  samples=len(hwm))
