"""What a phone is: parsers for getprop, /proc/cpuinfo, cpufreq listings, `dumpsys battery` and power_supply uevent.

This module is the ONE place these outputs are parsed; the profiler imports it (battery state,
uevent values) rather than parsing them again. Inputs come from real phones in every shape
seen in the wild: UTF-16LE with a BOM and CRLF (a dump redirected on Windows), CR-only line
ends, stray bytes before the first property, values spanning several lines, vendor extras in
`dumpsys battery` (Samsung's column-0 lines, duplicate keys in another case), uevent files
with a shell prompt on top, or the key=value map BatteryService logs. Values are returned as
the device reports them; unit conventions (µA or mA, the sign of current) are the power
module's business, since they need samples, not one reading.

``collect(transport)`` runs the commands and returns a ``DeviceInfo`` for `mobile-compress devices`.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

_PROP = re.compile(r"\[([^\[\]]+)\]: \[")


def decode_text(raw: bytes | str) -> str:
    """Text with LF line ends, whatever the encoding (UTF-8, UTF-16 with a BOM) and line ends (CRLF, CR)."""
    if isinstance(raw, bytes):
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raw = raw.decode("utf-16")
        elif len(raw) > 3 and raw[1:4:2] == b"\x00\x00" and raw[0:1] != b"\x00":
            raw = raw.decode("utf-16-le")  # UTF-16LE without a BOM
        else:
            raw = raw.decode("utf-8", errors="replace")
    return raw.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def parse_getprop(raw: bytes | str) -> dict[str, str]:
    """``[key]: [value]`` lines into a dict; a value may run over several lines until its closing ``]``."""
    props: dict[str, str] = {}
    key, parts = None, []
    for line in decode_text(raw).split("\n"):
        if key is not None:
            if line.endswith("]"):
                parts.append(line[:-1])
                props[key] = "\n".join(parts)
                key, parts = None, []
            else:
                parts.append(line)
            continue
        match = _PROP.search(line)  # search, not match: tolerate stray bytes before the first "["
        if not match:
            continue
        rest = line[match.end():]
        if rest.endswith("]"):
            props[match.group(1)] = rest[:-1]
        else:
            key, parts = match.group(1), [rest]
    return props


@dataclass
class CpuInfo:
    """/proc/cpuinfo: the processor numbers and, where listed, each core's ARM part number."""

    processors: list[int] = field(default_factory=list)
    parts: dict[int, str] = field(default_factory=dict)
    hardware: str | None = None

    @property
    def cores(self) -> int:
        return len(self.processors)


def parse_cpuinfo(raw: bytes | str) -> CpuInfo:
    info, current = CpuInfo(), None
    for line in decode_text(raw).split("\n"):
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor" and value.isdigit():
            current = int(value)
            info.processors.append(current)
        elif key == "CPU part" and current is not None:
            info.parts[current] = value
        elif key == "Hardware":
            info.hardware = value
    return info


def parse_sysfs_listing(raw: bytes | str) -> dict[str, str]:
    """``PATH:VALUE`` lines (``grep . FILES`` or a loop echoing ``$f:$(cat $f)``) into {path: value}.

    A line ending in a space followed by one without a path is a soft-wrapped continuation
    (e-mail "format=flowed"), and is joined back.
    """
    values: dict[str, str] = {}
    last = None
    for line in decode_text(raw).split("\n"):
        match = re.match(r"^(/[^:\s]+):(.*)$", line)
        if match:
            last = match.group(1)
            values[last] = match.group(2)
        elif last is not None and values[last].endswith(" ") and line.strip():
            values[last] += line
    return {k: v.strip() for k, v in values.items()}


def cpu_max_freqs_khz(listing: dict[str, str]) -> dict[int, int]:
    """{cpu index: cpuinfo_max_freq in kHz} from a sysfs listing."""
    freqs = {}
    for path, value in listing.items():
        match = re.search(r"/cpu(\d+)/cpufreq/cpuinfo_max_freq$", path)
        if match and value.strip().isdigit():
            freqs[int(match.group(1))] = int(value)
    return dict(sorted(freqs.items()))


BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not charging", 5: "full"}


@dataclass
class BatteryState:
    """`dumpsys battery`, in the units it prints: voltage in mV, temperature in tenths of °C."""

    level: int | None = None
    scale: int | None = None
    voltage_mv: int | None = None
    temperature_decic: int | None = None
    status: int | None = None
    health: int | None = None
    present: bool | None = None
    technology: str | None = None
    ac_powered: bool = False
    usb_powered: bool = False
    wireless_powered: bool = False
    dock_powered: bool = False
    updates_stopped: bool = False  # after `dumpsys battery unplug`/`set`: the values are frozen or faked
    charge_counter_uah: int | None = None
    max_charging_current: int | None = None
    current_now: int | None = None  # Samsung's extra line (mA), absent elsewhere
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def plugged(self) -> bool:
        return self.ac_powered or self.usb_powered or self.wireless_powered or self.dock_powered

    @property
    def status_name(self) -> str:
        return BATTERY_STATUS.get(self.status or 1, "unknown")

    @property
    def temperature_c(self) -> float | None:
        return None if self.temperature_decic is None else self.temperature_decic / 10

    @property
    def percent(self) -> float | None:
        if self.level is None:
            return None
        return 100.0 * self.level / (self.scale or 100)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(plugged=self.plugged, status_name=self.status_name, temperature_c=self.temperature_c)
        return data


_BATTERY_INTS = {"level": "level", "scale": "scale", "voltage": "voltage_mv", "temperature": "temperature_decic",
                 "status": "status", "health": "health", "Charge counter": "charge_counter_uah",
                 "Max charging current": "max_charging_current", "current now": "current_now"}
_BATTERY_BOOLS = {"present": "present", "AC powered": "ac_powered", "USB powered": "usb_powered",
                  "Wireless powered": "wireless_powered", "Dock powered": "dock_powered"}


def parse_dumpsys_battery(raw: bytes | str) -> BatteryState:
    """Keys are matched exactly ("level" is not "Capacity level"); unknown lines go to ``extras``."""
    state = BatteryState()
    for line in decode_text(raw).split("\n"):
        if "UPDATES STOPPED" in line:
            state.updates_stopped = True
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key or key.startswith("Current Battery Service state"):
            continue
        if key in _BATTERY_INTS and re.fullmatch(r"-?\d+", value):
            setattr(state, _BATTERY_INTS[key], int(value))
        elif key in _BATTERY_BOOLS and value in ("true", "false"):
            setattr(state, _BATTERY_BOOLS[key], value == "true")
        elif key == "technology":
            state.technology = value
        else:
            state.extras.setdefault(key, value)
    return state


def _uevent_value(value: str) -> int | str:
    return int(value) if re.fullmatch(r"-?\d+", value.strip()) else value.strip()


def parse_uevent_samples(raw: bytes | str) -> list[dict[str, int | str]]:
    """Every power_supply record in the text: a plain uevent file is one; a BatteryService log may hold several.

    Keys lose the ``POWER_SUPPLY_`` prefix and are lower-cased (``current_now``, ``voltage_now``);
    numbers become ints, in the node's own units.
    """
    text = decode_text(raw)
    samples = []
    for match in re.finditer(r"uevent=\{([^}]*)\}", text):
        record = {}
        for item in match.group(1).split(", "):
            key, sep, value = item.partition("=")
            if sep and key.startswith("POWER_SUPPLY_"):
                record[key[len("POWER_SUPPLY_"):].lower()] = _uevent_value(value)
        samples.append(record)
    if samples:
        return samples
    record = {}
    for line in text.split("\n"):
        match = re.match(r"^POWER_SUPPLY_([A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            record.setdefault(match.group(1).lower(), _uevent_value(match.group(2)))
    return [record] if record else []


def parse_uevent(raw: bytes | str) -> dict[str, int | str]:
    """One power_supply uevent record (the first, where a log holds several)."""
    samples = parse_uevent_samples(raw)
    return samples[0] if samples else {}


@dataclass
class DeviceInfo:
    """One line of `mobile-compress devices`."""

    serial: str
    model: str | None = None
    manufacturer: str | None = None
    soc: str | None = None
    soc_source: str | None = None  # "ro.soc.model" or "ro.board.platform"
    android: str | None = None
    sdk: int | None = None
    abi: str | None = None
    cores: int | None = None
    max_freq_khz: dict[int, int] = field(default_factory=dict)
    battery: BatteryState | None = None

    @property
    def freq_summary(self) -> str:
        """Cores grouped by max frequency, fastest first: ``1x3.19 + 4x2.80 + 3x2.02 GHz``."""
        groups: dict[int, int] = {}
        for freq in self.max_freq_khz.values():
            groups[freq] = groups.get(freq, 0) + 1
        return " + ".join(f"{n}x{f / 1e6:.2f}" for f, n in sorted(groups.items(), reverse=True)) + " GHz" if groups else "?"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["battery"] = self.battery.to_dict() if self.battery else None
        data["max_freq_khz"] = {str(k): v for k, v in self.max_freq_khz.items()}
        return data


def soc_of(props: dict[str, str]) -> tuple[str | None, str | None]:
    """The SoC name: ro.soc.model (Android 12+), else ro.board.platform."""
    for key in ("ro.soc.model", "ro.board.platform"):
        if props.get(key):
            return props[key], key
    return None, None


def device_info_from(serial: str, props: dict[str, str], cpuinfo: CpuInfo | None, freqs: dict[int, int],
                     battery: BatteryState | None) -> DeviceInfo:
    soc, source = soc_of(props)
    sdk = props.get("ro.build.version.sdk", "")
    cores = len(freqs) or (cpuinfo.cores if cpuinfo and cpuinfo.cores else None)
    return DeviceInfo(serial=serial, model=props.get("ro.product.model"), manufacturer=props.get("ro.product.manufacturer"),
                      soc=soc, soc_source=source, android=props.get("ro.build.version.release"),
                      sdk=int(sdk) if sdk.isdigit() else None, abi=props.get("ro.product.cpu.abi"), cores=cores,
                      max_freq_khz=freqs, battery=battery)


FREQ_COMMAND = ("for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do "
                "[ -r \"$f\" ] && echo \"$f:$(cat \"$f\")\"; done")


def collect(transport, timeout: float = 30.0) -> DeviceInfo:
    """Ask the device (getprop, cpufreq, /proc/cpuinfo, dumpsys battery); missing parts stay None."""
    props = parse_getprop(transport.shell("getprop", timeout=timeout).stdout)
    freqs = cpu_max_freqs_khz(parse_sysfs_listing(transport.shell(FREQ_COMMAND, timeout=timeout).stdout))
    cpuinfo = parse_cpuinfo(transport.shell("cat /proc/cpuinfo", timeout=timeout).stdout)
    battery_out = transport.shell("dumpsys battery", timeout=timeout)
    battery = parse_dumpsys_battery(battery_out.stdout) if "Battery Service" in battery_out.stdout else None
    return device_info_from(transport.serial, props, cpuinfo, freqs, battery)
