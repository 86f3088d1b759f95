"""Battery power from sampled ``current_now`` x ``voltage_now``, above an idle baseline.

The kernel's power-supply class specifies microamps and microvolts, but drivers differ:
some MediaTek gauges report milliamps (sysfs fixture 05: 300 at rest), and the sign of a
discharge is negative on Qualcomm/Android-convention drivers (fixtures 03, 04) and positive
on TI bq27xxx gauges (fixture 07). Both are detected from the samples and written into
the result, so a reader can check the call.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any, Sequence

# A phone running a benchmark draws well above 10 mA, so run readings below this magnitude must be mA, not uA.
# (Idle or on-charger readings can be tiny uA values, fixture 04, so only the run's samples decide.)
UA_THRESHOLD = 10_000
# Voltages in mV are ~3000-4500; in uV ~3e6-4.5e6.
UV_THRESHOLD = 100_000
MIN_SAMPLES = 3


@dataclass
class PowerSample:
    t_s: float
    current: float  # raw, as the driver reported it
    voltage: float


@dataclass
class Power:
    """Mean power above the idle baseline, or why there is none."""

    status: str  # "measured", or the reason it was not ("charging", "no battery readings", ...)
    run_mw: float | None = None
    baseline_mw: float | None = None
    above_baseline_mw: float | None = None
    mj_per_inference: float | None = None
    sample_rate_hz: float | None = None
    run_samples: int = 0
    baseline_samples: int = 0
    current_unit: str | None = None
    voltage_unit: str | None = None
    discharge_sign: str | None = None  # "negative" (Android convention) or "positive" (e.g. bq27xxx)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_samples(path: Path) -> list[PowerSample]:
    """The runner's ``uptime current voltage`` lines; rows with a missing value (NA) are skipped."""
    samples = []
    if not path.is_file():
        return samples
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            samples.append(PowerSample(float(parts[0]), float(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return samples


def current_unit(currents: Sequence[float]) -> str:
    """``"uA"`` or ``"mA"``, from the magnitude of the readings taken while the benchmark ran."""
    typical = sorted(abs(c) for c in currents)[len(currents) // 2]
    return "uA" if typical >= UA_THRESHOLD else "mA"


def voltage_unit(voltages: Sequence[float]) -> str:
    typical = sorted(voltages)[len(voltages) // 2]
    return "uV" if typical >= UV_THRESHOLD else "mV"


def discharge_sign(currents: Sequence[float]) -> int:
    """-1 where drivers report a discharge as negative (the Android convention), +1 where positive."""
    return -1 if sorted(currents)[len(currents) // 2] < 0 else 1


def measure_power(baseline: Sequence[PowerSample], run: Sequence[PowerSample], *, inference_ms: float | None,
                  charging: bool | None, allow_charging: bool = False) -> Power:
    """Mean power during the run minus the idle baseline; energy per inference from the mean latency."""
    if charging and not allow_charging:
        return Power("not measured: the device is charging", notes="unplug it, or let the profiler run "
                     "`dumpsys battery unplug` (--unplug), or pass --allow-charging to report it anyway")
    usable = [s for s in run if s.voltage > 0]
    idle = [s for s in baseline if s.voltage > 0]
    if not usable:
        return Power("not measured: no battery readings (current_now/voltage_now missing or unreadable)",
                     notes="the runner read the power-supply node given by RunnerOptions.power_supply_dir "
                           "(default /sys/class/power_supply/battery)")
    if len(usable) < MIN_SAMPLES:
        return Power("not measured: fewer than 3 battery readings during the run", run_samples=len(usable),
                     notes="the run was shorter than the sampling interval; raise --power-interval or the run time")
    every = [s.current for s in usable + idle]
    if not any(every):
        return Power("not measured: current_now reads 0 (the fuel gauge reports nothing)", run_samples=len(usable))
    unit = current_unit([s.current for s in usable])
    vunit = voltage_unit([s.voltage for s in usable + idle])
    sign = discharge_sign(every)
    amps = 1e-6 if unit == "uA" else 1e-3
    volts = 1e-6 if vunit == "uV" else 1e-3

    def watts(samples: Sequence[PowerSample]) -> float:
        return fmean(sign * s.current * amps * s.voltage * volts for s in samples)

    run_w = watts(usable)
    base_w = watts(idle) if len(idle) >= 1 else None
    span = usable[-1].t_s - usable[0].t_s
    rate = (len(usable) - 1) / span if span > 0 else None
    result = Power("measured", run_mw=run_w * 1e3, baseline_mw=None if base_w is None else base_w * 1e3,
                   sample_rate_hz=rate, run_samples=len(usable), baseline_samples=len(idle), current_unit=unit,
                   voltage_unit=vunit, discharge_sign="negative" if sign < 0 else "positive")
    if base_w is None:
        result.notes = "no idle baseline was sampled; above-baseline power is unknown"
        return result
    result.above_baseline_mw = (run_w - base_w) * 1e3
    if inference_ms is not None:
        result.mj_per_inference = result.above_baseline_mw * inference_ms / 1e3  # mW x ms = uJ
    if charging:
        result.notes = "measured while charging (--allow-charging): the charger's current is mixed in"
    return result
