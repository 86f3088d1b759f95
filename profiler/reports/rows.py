"""One flat row per run: the figures every view shows, extracted in one place."""
from __future__ import annotations

from typing import Any

from mobile_compress.report import printable
from profiler.results import RunRecord

NOTE_NAMES = 3  # refused device file names a table note shows; the CSV and profile.json hold them all


def _get(d: dict[str, Any] | None, key: str) -> Any:
    return None if not d else d.get(key)


def coverage_text(record: RunRecord) -> str:
    parts = []
    for c in record.coverage:
        text = f"{c['delegate']} {c['state']}"
        if c.get("state") == "partial" and c.get("kernels") is not None:
            text += f" ({c['kernels']} kernels)"
        parts.append(text)
    return "; ".join(parts)


def refused_text(refused: list[dict[str, str]]) -> str:
    """Refused device file names with why, control characters shown escaped (a name is device output)."""
    return "; ".join(f"{printable(r['name'])} ({r.get('reason') or 'refused'})" for r in refused)


def refused_note(record: RunRecord) -> str:
    """A short note for tables: how many files the device listed that were not pulled, and the first names."""
    refused = record.refused_files
    if not refused:
        return ""
    count = f"{len(refused)} unsafe file name{'s' if len(refused) > 1 else ''}"
    more = f"; and {len(refused) - NOTE_NAMES} more" if len(refused) > NOTE_NAMES else ""
    return f"not pulled from the device, {count} (all in profile.json): {refused_text(refused[:NOTE_NAMES])}{more}"


def flat(record: RunRecord) -> dict[str, Any]:
    lat, mem, pw = record.latency, record.memory, record.power
    before, after = record.thermal_before, record.thermal_after
    device = record.device if record.mode == "device" else "host (LiteRT on this computer)"
    return {
        "device": device, "device_model": _get(record.device_info, "model"), "mode": record.mode,
        "model": record.model, "model_path": record.model_path, "model_sha256": record.model_sha256,
        "delegate": record.delegate, "status": record.status, "error": record.error,
        "refused_files": refused_text(record.refused_files),
        "n": _get(lat, "n"), "init_ms": _get(lat, "init_ms"), "first_ms": _get(lat, "first_ms"),
        "warmup_ms": _get(lat, "warmup_ms"), "mean_ms": _get(lat, "mean_ms"), "std_ms": _get(lat, "std_ms"),
        "min_ms": _get(lat, "min_ms"), "max_ms": _get(lat, "max_ms"),
        "median_ms": _get(lat, "p50_ms") if _get(lat, "p50_ms") is not None else _get(lat, "median_ms"),
        "p90_ms": _get(lat, "p90_ms"), "p99_ms": _get(lat, "p99_ms"),
        "p5_ms": _get(lat, "p5_ms"), "p95_ms": _get(lat, "p95_ms"),
        "ci95_low_ms": _get(lat, "ci95_low_ms"), "ci95_high_ms": _get(lat, "ci95_high_ms"),
        "latency_source": _get(lat, "source"),
        "mem_init_mb": _get(mem, "footprint_init_mb"), "mem_overall_mb": _get(mem, "footprint_overall_mb"),
        "mem_kind": _get(mem, "footprint_kind"), "periodic_peak_mb": _get(mem, "periodic_peak_mb"),
        "vm_hwm_mb": _get(mem, "vm_hwm_mb"),
        "power_status": _get(pw, "status"), "power_mw": _get(pw, "above_baseline_mw"),
        "baseline_mw": _get(pw, "baseline_mw"), "mj_per_inference": _get(pw, "mj_per_inference"),
        "power_rate_hz": _get(pw, "sample_rate_hz"),
        "thermal_before": _get(before, "status_name"), "thermal_after": _get(after, "status_name"),
        "max_temp_before_c": _get(before, "max_c"), "max_temp_after_c": _get(after, "max_c"),
        "coverage": coverage_text(record),
    }


COLUMNS = list(flat(RunRecord("d", "m", "x", "ok")).keys())
