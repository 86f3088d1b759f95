"""Latency statistics, memory samples, power (units, signs, baseline, charging) and thermals.

Battery figures come from the real uevent captures in tests/fixtures/android/sysfs (cited per
test); the sample series around them are built here, because no capture has a time series.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from android_harness.device_info import parse_uevent_samples
from profiler.measure import latency_from_output, latency_from_samples, mean_ci95, memory_from, read_mem_samples
from profiler.parse import parse_log
from profiler.power import PowerSample, measure_power, read_samples
from profiler.thermal import parse_thermalservice, parse_zones, snapshot_from_dir

FIXTURES = Path(__file__).parent / "fixtures" / "android"


def bm(prefix: str):
    [path] = [p for p in (FIXTURES / "benchmark_model").glob(f"{prefix}_*.txt") if not p.name.endswith(".source.txt")]
    return parse_log(path.read_text())[-1]


def uevent(prefix: str) -> list[dict]:
    """A sysfs fixture's power_supply records, read by android_harness.device_info (the one uevent parser)."""
    [path] = [p for p in (FIXTURES / "sysfs").glob(f"{prefix}_*.txt") if not p.name.endswith(".source.txt")]
    return parse_uevent_samples(path.read_bytes())


def series(current: float, voltage: float, n: int, start: float = 0.0, step: float = 0.1) -> list[PowerSample]:
    return [PowerSample(start + i * step, current, voltage) for i in range(n)]


def test_latency_from_benchmark_statistics_with_ci() -> None:
    lat = latency_from_output(bm("08"))
    assert lat.source == "benchmark_model statistics" and lat.n == 50
    assert lat.mean_ms == pytest.approx(1240.27) and lat.std_ms == pytest.approx(2.565)
    assert (lat.min_ms, lat.max_ms) == (1238.588, 1252.566)
    assert (lat.p5_ms, lat.median_ms, lat.p95_ms) == (1238.753, 1239.807, 1247.415)
    assert (lat.init_ms, lat.first_ms, lat.warmup_ms) == (5.579, 1357.602, pytest.approx(1357.6))
    half = 2.0095752 * 2.565 / math.sqrt(50)  # t(0.975, 49)
    assert lat.ci95_low_ms == pytest.approx(1240.27 - half) and lat.ci95_high_ms == pytest.approx(1240.27 + half)
    assert lat.p50_ms is None and lat.p99_ms is None  # no per-run samples from benchmark_model


def test_latency_old_format_uses_summary_and_warmup() -> None:
    lat = latency_from_output(bm("06"))
    assert (lat.mean_ms, lat.init_ms, lat.warmup_ms, lat.first_ms) == (137.722, 4.452, 146.161, 146.161)


def test_latency_from_samples_percentiles_and_ci() -> None:
    lat = latency_from_samples([float(i) for i in range(1, 101)], init_ms=3.0, first_ms=9.0)
    assert lat.n == 100 and lat.mean_ms == 50.5 and (lat.min_ms, lat.max_ms) == (1.0, 100.0)
    assert (lat.p50_ms, lat.p90_ms, lat.p99_ms) == pytest.approx((50.5, 90.1, 99.01))
    std = math.sqrt(sum((i - 50.5) ** 2 for i in range(1, 101)) / 99)
    assert lat.std_ms == pytest.approx(std)
    low, high = mean_ci95(50.5, std, 100)
    assert (lat.ci95_low_ms, lat.ci95_high_ms) == (low, high) and high - low == pytest.approx(2 * 1.984217 * std / 10)
    assert mean_ci95(1.0, 0.0, 1) is None


def test_memory_from_footprint_and_sampled_vmhwm(tmp_path: Path) -> None:
    (tmp_path / "mem.tsv").write_text("1.00\t26960\t26960\n1.10\t40960\t39000\n1.20\tNA\tNA\nbroken\n")
    samples = read_mem_samples(tmp_path / "mem.tsv")
    mem = memory_from(bm("16"), samples)
    assert (mem.footprint_kind, mem.footprint_init_mb, mem.footprint_overall_mb) == ("delta", 98.0977, 99.2031)
    assert mem.vm_hwm_mb == 40.0 and mem.vm_rss_max_mb == pytest.approx(39000 / 1024) and mem.samples == 2


def test_power_negative_microamps_android_convention() -> None:
    # sysfs/03 (SDM660 qcom-battery): CURRENT_NOW=-19531 uA at VOLTAGE_NOW=4336658 uV as the idle reading.
    [rest] = uevent("03")
    assert (rest["current_now"], rest["voltage_now"]) == (-19531, 4336658)
    idle = series(rest["current_now"], rest["voltage_now"], 10)
    run = series(-950000, 4300000, 20, start=2.0)
    p = measure_power(idle, run, inference_ms=10.0, charging=False)
    assert (p.status, p.current_unit, p.voltage_unit, p.discharge_sign) == ("measured", "uA", "uV", "negative")
    assert p.baseline_mw == pytest.approx(19531e-6 * 4.336658 * 1e3)
    assert p.run_mw == pytest.approx(0.95 * 4.3 * 1e3)
    assert p.above_baseline_mw == pytest.approx(p.run_mw - p.baseline_mw)
    assert p.mj_per_inference == pytest.approx(p.above_baseline_mw * 10.0 / 1e3)
    assert p.sample_rate_hz == pytest.approx(10.0) and (p.run_samples, p.baseline_samples) == (20, 10)


def test_power_positive_discharge_bq27000_matches_its_own_power_avg() -> None:
    # sysfs/07 (GTA04, bq27000): Discharging with CURRENT_NOW=+354144 uA, VOLTAGE_NOW=3970000 uV,
    # and the gauge's own POWER_AVG=1392840 uW.
    [gauge] = uevent("07")
    assert (gauge["status"], gauge["current_now"], gauge["voltage_now"]) == ("Discharging", 354144, 3970000)
    run = series(gauge["current_now"], gauge["voltage_now"], 10)
    p = measure_power(series(100000, 3980000, 5), run, inference_ms=None, charging=False)
    assert p.discharge_sign == "positive" and p.current_unit == "uA"
    assert p.run_mw == pytest.approx(gauge["power_avg"] / 1e3, rel=0.02)
    assert p.mj_per_inference is None


def test_power_milliamp_gauge_detected() -> None:
    # sysfs/05 (MT6762 gauge): CURRENT_NOW=300 with VOLTAGE_NOW=4332000 uV; the current is in mA.
    [gauge] = uevent("05")
    assert (gauge["current_now"], gauge["voltage_now"]) == (300, 4332000)
    reading = series(gauge["current_now"], gauge["voltage_now"], 5)
    p = measure_power(reading, reading, inference_ms=1.0, charging=False)
    assert (p.current_unit, p.voltage_unit) == ("mA", "uV")
    assert p.run_mw == pytest.approx(0.3 * 4.332 * 1e3) and p.above_baseline_mw == pytest.approx(0.0)


def test_power_broken_gauge_reading_zero() -> None:
    # sysfs/06 (bq27000 with broken HDQ): CURRENT_NOW=0 and VOLTAGE_NOW=0.
    [broken] = uevent("06")
    reading = series(broken["current_now"], broken["voltage_now"], 5)
    p = measure_power(reading, reading, inference_ms=1.0, charging=False)
    assert p.status.startswith("not measured") and p.run_mw is None


def test_power_refused_while_charging_unless_asked() -> None:
    # sysfs/04 (Moto G2 on USB, Full): CURRENT_NOW flips sign around zero: -4306, -2103, 503, -9214, -2704 uA.
    records = uevent("04")
    assert [r["current_now"] for r in records] == [-4306, -2103, 503, -9214, -2704] and records[0]["online"] == 1
    readings = [PowerSample(i * 0.1, r["current_now"], r["voltage_now"]) for i, r in enumerate(records)]
    refused = measure_power(readings, readings, inference_ms=1.0, charging=True)
    assert refused.status == "not measured: the device is charging" and "--allow-charging" in refused.notes
    allowed = measure_power(readings, readings, inference_ms=1.0, charging=True, allow_charging=True)
    assert allowed.status == "measured" and "while charging" in allowed.notes


def test_power_too_few_samples_and_missing_baseline() -> None:
    assert "no battery readings" in measure_power([], [], inference_ms=1.0, charging=False).status
    assert measure_power([], series(-500000, 4e6, 2), inference_ms=1.0, charging=False).status.startswith("not measured")
    p = measure_power([], series(-500000, 4e6, 5), inference_ms=1.0, charging=False)
    assert p.status == "measured" and p.above_baseline_mw is None and "baseline" in p.notes


def test_read_power_samples_skips_na(tmp_path: Path) -> None:
    (tmp_path / "power.tsv").write_text("10.00\t-350000\t3900000\n10.10\tNA\t3900000\n\n10.20\t-360000\t3900000\n")
    assert [s.current for s in read_samples(tmp_path / "power.tsv")] == [-350000, -360000]
    assert read_samples(tmp_path / "missing.tsv") == []


def test_thermalservice_fixtures() -> None:
    calm = parse_thermalservice((FIXTURES / "dumpsys" / "02_thermalservice_qualcomm-nsp-cdsp_hal2.0_memfault.txt").read_text())
    assert calm.status == 0 and calm.status_name == "none"
    assert calm.temperatures_c["skin"] == 33.136 and calm.temperatures_c["nsp1"] == 34.7  # HAL's current, not cached
    assert "vbat" not in calm.temperatures_c and "socd" not in calm.temperatures_c  # volts and percent, not degrees
    assert calm.max_c == 36.2
    hot = parse_thermalservice((FIXTURES / "dumpsys" / "04_thermalservice_throttling-status2_hidl-thresholds_memfault.txt").read_text())
    assert (hot.status, hot.status_name, hot.max_c, hot.temperatures_c["skin"]) == (2, "moderate", 48.2, 44.637)


def test_thermal_zones_fallback(tmp_path: Path) -> None:
    assert parse_zones("cpu-0\t41000\ncpu-0\t42000\nbattery\t29\ngpu\tNA\n") == {"cpu-0": 41.0, "cpu-0'": 42.0,
                                                                                 "battery": 29.0}
    (tmp_path / "zones_before.tsv").write_text("skin\t35500\n")
    (tmp_path / "thermalservice_before.txt").write_text("")  # a device without thermalservice
    snap = snapshot_from_dir(tmp_path, "before")
    assert snap.temperatures_c == {"skin": 35.5} and snap.source == "sysfs thermal zones" and snap.status is None
