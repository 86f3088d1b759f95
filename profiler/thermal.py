"""Thermal state before and after a run: ``dumpsys thermalservice`` and the sysfs thermal zones.

A run that starts hot or ends throttled is slower for reasons that are not the model's;
the report shows both ends so a reader can tell.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# android.os.PowerManager THERMAL_STATUS_* values.
STATUS_NAMES = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}
_STATUS = re.compile(r"^Thermal Status:\s*(\d+)")
_TEMPERATURE = re.compile(r"Temperature\{mValue=([-\d.eE+]+|NaN), mType=(-?\d+), mName=([^,]+), mStatus=(-?\d+)\}")
# Temperature types 6-8 are battery-current-limit readings (volts, amps, percent), not temperatures.
_NOT_TEMPERATURE_TYPES = {6, 7, 8}
_SECTION = re.compile(r"^(Cached temperatures|Current temperatures from HAL|Current temperatures)\b")


@dataclass
class ThermalSnapshot:
    status: int | None = None
    temperatures_c: dict[str, float] = field(default_factory=dict)  # sensor name -> degrees C
    source: str = ""  # which section or file the temperatures came from

    @property
    def status_name(self) -> str | None:
        return None if self.status is None else STATUS_NAMES.get(self.status, str(self.status))

    @property
    def max_c(self) -> float | None:
        return max(self.temperatures_c.values()) if self.temperatures_c else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status_name": self.status_name, "max_c": self.max_c}


def parse_thermalservice(text: str) -> ThermalSnapshot:
    """Thermal status and temperatures; the HAL's current readings win over the cached ones."""
    snap = ThermalSnapshot()
    sections: dict[str, dict[str, float]] = {}
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if match := _STATUS.match(stripped):
            snap.status = int(match.group(1))
        elif match := _SECTION.match(stripped):
            section = match.group(1)
            sections.setdefault(section, {})
        elif (match := _TEMPERATURE.search(stripped)) and section is not None:
            if match.group(1) != "NaN" and int(match.group(2)) not in _NOT_TEMPERATURE_TYPES:
                sections[section][match.group(3).strip()] = float(match.group(1))
        elif stripped and not line[:1].isspace():
            section = None
    for name in ("Current temperatures from HAL", "Current temperatures", "Cached temperatures"):
        if sections.get(name):
            snap.temperatures_c, snap.source = sections[name], f"dumpsys thermalservice: {name}"
            break
    return snap


def parse_zones(text: str) -> dict[str, float]:
    """The runner's ``type<TAB>temp`` lines; sysfs temps are millidegrees (values above 1000) or degrees."""
    temps: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 2 or parts[1].strip() in ("", "NA"):
            continue
        try:
            value = float(parts[1])
        except ValueError:
            continue
        name = parts[0].strip()
        while name in temps:
            name += "'"
        temps[name] = value / 1000 if abs(value) > 1000 else value
    return temps


def snapshot_from_dir(results: Path, when: str) -> ThermalSnapshot:
    """``when`` is "before" or "after"; thermalservice where the device has it, else the sysfs zones."""
    service = results / f"thermalservice_{when}.txt"
    snap = parse_thermalservice(service.read_text(errors="replace")) if service.is_file() else ThermalSnapshot()
    zones = results / f"zones_{when}.tsv"
    if not snap.temperatures_c and zones.is_file():
        snap.temperatures_c, snap.source = parse_zones(zones.read_text(errors="replace")), "sysfs thermal zones"
    return snap
