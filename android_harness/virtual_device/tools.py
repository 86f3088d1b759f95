"""The device commands that must answer from the virtual device's config: sh, getprop, dumpsys, cmd, taskset.

Each is a tiny launcher in the sandbox's /system/bin calling ``main(name)``. Output formats
follow AOSP: ``getprop`` prints ``[key]: [value]``; ``dumpsys battery`` the BatteryService
dump (with "(UPDATES STOPPED -- use 'reset' to restart)" after ``unplug``); ``dumpsys
thermalservice`` the ThermalManagerService dump. Stdlib only (started with ``python -S``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from android_harness.virtual_device.sandbox import rewrite

_STATUS_CODES = {"Unknown": 1, "Charging": 2, "Discharging": 3, "Not charging": 4, "Full": 5}


def _state() -> Path:
    return Path(os.environ["MC_VDEV_STATE"])


def _device() -> dict:
    return json.loads((_state() / "device.json").read_text())


def _override() -> dict:
    path = _state() / "battery_override.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _sysfs(relative: str, default: str = "") -> str:
    try:
        return (Path(os.environ["MC_VDEV_ROOT"]) / relative).read_text().strip()
    except OSError:
        return default


def sh(args: list[str]) -> None:
    """/system/bin/sh: rewrite device paths in ``-c`` text or in a script file, then run the host's /bin/sh."""
    root = os.environ["MC_VDEV_ROOT"].encode()
    argv, index = ["/bin/sh"], 0
    while index < len(args) and args[index].startswith("-") and args[index] not in ("-c", "-", "--"):
        argv.append(args[index])
        index += 1
    rest = args[index:]
    if rest[:1] == ["-c"] and len(rest) >= 2:
        argv += ["-c", rewrite(rest[1].encode(), root).decode(errors="surrogateescape"), *rest[2:]]
    elif rest and rest[0] not in ("-", "--"):
        script = Path(rewrite(rest[0].encode(), root).decode())
        try:
            text = script.read_bytes()
        except OSError as err:
            print(f"sh: {rest[0]}: {err.strerror}", file=sys.stderr)
            sys.exit(127)
        argv += ["-c", rewrite(text, root).decode(errors="surrogateescape"), str(script), *rest[1:]]
    else:
        argv += rest
    os.execv("/bin/sh", argv)


def getprop(args: list[str]) -> int:
    props = _device()["props"]
    if not args:
        sys.stdout.write("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())))
    else:
        sys.stdout.write(props.get(args[0], args[1] if len(args) > 1 else "") + "\n")
    return 0


def _battery_dump() -> str:
    battery, override = _device()["battery"], _override()
    usb = _sysfs("sys/class/power_supply/usb/online", "0") == "1"
    ac = _sysfs("sys/class/power_supply/ac/online", "0") == "1"
    if override.get("unplugged"):
        usb = ac = False
    level = override.get("level", _sysfs("sys/class/power_supply/battery/capacity", str(battery["capacity"])))
    status = _STATUS_CODES.get(_sysfs("sys/class/power_supply/battery/status", battery["status"]), 1)
    voltage_mv = int(_sysfs("sys/class/power_supply/battery/voltage_now", str(battery["voltage_now"]))) // 1000
    lines = ["Current Battery Service state:"]
    if override:
        lines.append("  (UPDATES STOPPED -- use 'reset' to restart)")
    lines += [f"  AC powered: {str(ac).lower()}", f"  USB powered: {str(usb).lower()}", "  Wireless powered: false",
              "  Dock powered: false", f"  Max charging current: {500000 if usb or ac else 0}",
              f"  Max charging voltage: {5000000 if usb or ac else 0}", "  Charge counter: 3376000",
              f"  status: {status}", "  health: 2", "  present: true", f"  level: {level}", "  scale: 100",
              f"  voltage: {voltage_mv}", f"  temperature: {_sysfs('sys/class/power_supply/battery/temp', str(battery['temp']))}",
              f"  technology: {battery['technology']}", "  Charging state: 1", "  Charging policy: 1",
              "  Capacity level: 3"]
    return "\n".join(lines) + "\n"


def _battery_command(args: list[str]) -> int:
    path = _state() / "battery_override.json"
    override = _override()
    if args[:1] == ["unplug"]:
        override["unplugged"] = True
    elif args[:1] == ["reset"]:
        path.unlink(missing_ok=True)
        return 0
    elif args[:1] == ["set"] and len(args) == 3:
        override[args[1]] = args[2] if args[1] != "ac" and args[1] != "usb" else bool(int(args[2]))
    else:
        sys.stdout.write(_battery_dump())
        return 0
    path.write_text(json.dumps(override))
    return 0


def _thermal_dump() -> str:
    device = _device()
    override = _state() / "thermal_override.json"
    status = json.loads(override.read_text())["status"] if override.is_file() else device["thermal_status"]
    temps = []
    for index, zone in enumerate(device["thermal_zones"]):
        milli = _sysfs(f"sys/class/thermal/thermal_zone{index}/temp", str(round(zone["temp_c"] * 1000)))
        temps.append(f"\tTemperature{{mValue={int(milli) / 1000:g}, mType={zone['hal_type']}, "
                     f"mName={zone['name']}, mStatus={status if zone['hal_type'] == 3 else 0}}}")
    listeners = "\tcallbacks: 1\n\tkilled: false\n\tbroadcasts count: -1"
    return (f"IsStatusOverride: {str(override.is_file()).lower()}\nThermalEventListeners:\n{listeners}\n"
            f"ThermalStatusListeners:\n{listeners}\nThermal Status: {status}\nCached temperatures:\n"
            + "\n".join(temps) + "\nHAL Ready: true\nHAL connection:\n\tThermalHAL 2.0 connected: yes\n"
            "Current temperatures from HAL:\n" + "\n".join(temps) + "\nCurrent cooling devices from HAL:\n"
            "\tCoolingDevice{mValue=0, mType=2, mName=thermal-cpufreq-0}\n")


def _thermal_command(args: list[str]) -> int:
    override = _state() / "thermal_override.json"
    if args[:1] == ["override-status"] and len(args) == 2:
        override.write_text(json.dumps({"status": int(args[1])}))
    elif args[:1] == ["reset"]:
        override.unlink(missing_ok=True)
    else:
        sys.stdout.write(_thermal_dump())
    return 0


_SERVICES = {"battery": _battery_command, "thermalservice": _thermal_command}


def dumpsys(args: list[str]) -> int:
    if not args:
        sys.stdout.write("".join(f"DUMP OF SERVICE {name}:\n" for name in _SERVICES))
        return 0
    if args[0] == "-l":
        sys.stdout.write("Currently running services:\n" + "".join(f"  {name}\n" for name in _SERVICES))
        return 0
    handler = _SERVICES.get(args[0])
    if handler is None:
        sys.stderr.write(f"Can't find service: {args[0]}\n")
        return 0  # dumpsys prints the complaint and still exits 0
    return handler(args[1:])


def cmd(args: list[str]) -> int:
    if args[:1] == ["-l"]:
        sys.stdout.write("Currently running services:\n" + "".join(f"  {name}\n" for name in _SERVICES))
        return 0
    handler = _SERVICES.get(args[0]) if args else None
    if handler is None:
        sys.stderr.write(f"cmd: Can't find service: {args[0] if args else ''}\n")
        return 20
    return handler(args[1:])


def taskset(args: list[str]) -> None:
    """toybox taskset MASK CMD...: the device has more cores than the host, so the mask keeps only host CPUs."""
    real = next((p for p in ("/usr/bin/taskset", "/bin/taskset") if os.path.exists(p)), None)
    if args and not args[0].startswith("-") and len(args) > 1:
        try:
            wanted = int(args[0], 16)
        except ValueError:
            wanted = 0
        host = sum(1 << cpu for cpu in os.sched_getaffinity(0))
        mask = (wanted & host) or host
        if real is None:
            os.sched_setaffinity(0, [cpu for cpu in range(mask.bit_length()) if mask >> cpu & 1])
            os.execvp(args[1], args[1:])
        os.execv(real, [real, f"{mask:x}", *args[1:]])
    if real is None:
        sys.stderr.write("taskset: not available on this host\n")
        sys.exit(127)
    os.execv(real, [real, *args])


def main(name: str) -> None:
    args = sys.argv[1:]
    if name == "sh":
        sh(args)
    if name == "taskset":
        taskset(args)
    sys.exit({"getprop": getprop, "dumpsys": dumpsys, "cmd": cmd}[name](args))
