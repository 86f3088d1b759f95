"""The virtual device's filesystem: a host directory standing in for the phone's "/".

Commands run with the host's /bin/sh, so device paths in them (/data/local/tmp, /sys/...,
/proc/cpuinfo, /system/bin/...) are rewritten to the sandbox before they run, and the sandbox
prefix is taken back out of what they print. /proc/PID/* stays the host's real /proc, so a
runner can sample VmHWM of the process it started. Scripts run through ``sh`` are rewritten
the same way (``system/bin/sh`` is a wrapper). This module is stdlib-only: the wrapper and
the tools import it at every call.

Layout of the work directory: ``root/`` is the device's "/", ``state/`` holds what the device
knows but does not show (its config as JSON, the battery override, the armed faults).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

# Device top-level directories that live in the sandbox; everything else is the host's.
_MAPPED = r"data|sdcard|storage|sys|system|vendor|odm|product|mnt|apex|cache|metadata"
_DEVICE_PATH = re.compile(rb"(?<![\w.\-/$])(/(?:" + _MAPPED.encode() + rb")(?=/|[^\w.\-]|$)|/proc/(?:cpuinfo|version)\b)")
_REPO = Path(__file__).resolve().parents[2]
TOOLS = ("sh", "getprop", "dumpsys", "cmd", "taskset")


def rewrite(command: bytes, root: bytes) -> bytes:
    """Device paths in a command or script become sandbox paths."""
    def mapped(match: re.Match) -> bytes:
        if command.startswith(root, match.start()):  # already a sandbox path (a workdir under /mnt, say)
            return match.group(0)
        return root + match.group(1)

    return _DEVICE_PATH.sub(mapped, command)


def to_host(path: str, root: Path | str) -> Path:
    """A device path as a sandbox path (paths already inside the sandbox pass through)."""
    root = str(root)
    if path.startswith(root + "/") or path == root:
        return Path(path)
    return Path(rewrite(path.encode(), root.encode()).decode())


class Unmapper:
    """Takes the sandbox prefix back out of streamed output, even when it is split across chunks."""

    def __init__(self, root: Path | str) -> None:
        self.root = str(root).encode()
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        cut = len(data)
        for size in range(min(len(self.root), len(data)), 0, -1):  # a possible start of the root at the end
            if self.root.startswith(data[-size:]):
                cut -= size
                break
        if data[:cut].endswith(self.root):  # whole root just before: is it "/" or "/data..."? wait and see
            cut -= len(self.root)
        self._pending = data[cut:]
        return self._unmap(data[:cut])

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        return self._unmap(data)

    def _unmap(self, data: bytes) -> bytes:
        data = re.sub(re.escape(self.root) + rb"(?=/)", b"", data)
        return data.replace(self.root, b"/")


class Sandbox:
    """Creates and describes the device tree under ``workdir``."""

    def __init__(self, workdir: Path | str) -> None:
        self.workdir = Path(workdir).resolve()
        self.root = self.workdir / "root"
        self.state = self.workdir / "state"

    def host_path(self, device_path: str) -> Path:
        if not device_path.startswith("/"):
            device_path = "/data/local/tmp/" + device_path
        return to_host(device_path, self.root)

    def sync_path(self, device_path: str, follow_last: bool = True) -> Path:
        """A device path for file transfer, which never leaves the sandbox (PermissionError otherwise).

        Shell commands run as the host user anyway, but push and pull must not write or read
        host files through a path the sandbox does not map (/etc/..., /data/../..) nor through a
        symlink inside it (``ln -s /etc x`` then ``pull x/hostname``): symlinks are resolved before
        the check and the resolved path is what gets opened. ``follow_last=False`` keeps a final
        symlink itself (lstat), its directory still resolved.
        """
        host = Path(os.path.normpath(self.host_path(device_path)))
        real = host.resolve() if follow_last else host.parent.resolve() / host.name
        if real != self.root and self.root not in real.parents:
            raise PermissionError(13, "Permission denied", device_path)
        return real

    def env(self) -> dict[str, str]:
        """The environment of a device shell: sandbox tools first on PATH, HOME and TMPDIR on the sandbox."""
        env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")}
        env.update({"PATH": f"{self.root}/system/bin:{self.root}/vendor/bin:/usr/bin:/bin",
                    "HOME": f"{self.root}/data/local/tmp", "TMPDIR": f"{self.root}/data/local/tmp",
                    "ANDROID_DATA": f"{self.root}/data", "MC_VDEV_ROOT": str(self.root),
                    "MC_VDEV_STATE": str(self.state), "PYTHONUNBUFFERED": "1"})
        return env

    def build(self, config) -> None:
        """Create the tree from a VirtualDeviceConfig; files the user put in /data/local/tmp are kept."""
        for sub in ("data/local/tmp", "sdcard", "system/bin", "vendor/bin", "proc", "sys/class/power_supply",
                    "sys/class/thermal", "sys/devices/system/cpu"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self._write_tools()
        self._write_cpus(config.cpu_max_khz)
        self._write_thermal(config.thermal_zones)
        battery = config.battery
        supplies = self.root / "sys/class/power_supply"
        for name, online in (("usb", battery.usb_online), ("ac", battery.ac_online)):
            (supplies / name).mkdir(exist_ok=True)
            (supplies / name / "online").write_text(f"{int(online)}\n")
        write_battery(self.root, vars(battery), battery.current_now)
        device = {"props": config.props, "battery": vars(battery), "thermal_status": config.thermal_status,
                  "thermal_zones": [vars(z) for z in config.thermal_zones],
                  "nnapi_accelerators": config.nnapi_accelerators}
        (self.state / "device.json").write_text(json.dumps(device, indent=1))
        (self.state / "battery_override.json").unlink(missing_ok=True)
        config.faults.publish(self.state / "faults.json")

    def _write_tools(self) -> None:
        for tool in TOOLS:
            script = self.root / "system/bin" / tool
            script.write_text(f"#!{sys.executable} -S\nimport sys\nsys.path.insert(0, {str(_REPO)!r})\n"
                              f"from android_harness.virtual_device.tools import main\nmain({tool!r})\n")
            script.chmod(0o755)

    def _write_cpus(self, max_khz: list[int]) -> None:
        cpus = self.root / "sys/devices/system/cpu"
        last = len(max_khz) - 1
        for name in ("possible", "present", "online"):
            (cpus / name).write_text(f"0-{last}\n")
        lines = []
        for index, freq in enumerate(max_khz):
            node = cpus / f"cpu{index}" / "cpufreq"
            node.mkdir(parents=True, exist_ok=True)
            policy = [i for i, f in enumerate(max_khz) if f == freq]
            for name, value in (("cpuinfo_max_freq", freq), ("scaling_max_freq", freq), ("cpuinfo_min_freq", 300000),
                                ("scaling_cur_freq", freq), ("related_cpus", " ".join(map(str, policy))),
                                ("scaling_governor", "schedutil")):
                (node / name).write_text(f"{value}\n")
            part = "0xd46" if freq == min(max_khz) else ("0xd4e" if freq == max(max_khz) else "0xd4d")
            lines.append(f"processor\t: {index}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
                         f"crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
                         f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 0\n")
        (self.root / "proc/cpuinfo").write_text("\n".join(lines) + "\n")

    def _write_thermal(self, zones) -> None:
        for index, zone in enumerate(zones):
            node = self.root / f"sys/class/thermal/thermal_zone{index}"
            node.mkdir(parents=True, exist_ok=True)
            (node / "type").write_text(f"{zone.name}\n")
            (node / "temp").write_text(f"{round(zone.temp_c * 1000)}\n")


def write_battery(root: Path | str, battery: dict, current_now: int) -> None:
    """The battery's sysfs node (single-value files and uevent), with ``current_now`` as given."""
    node = Path(root) / "sys/class/power_supply/battery"
    node.mkdir(parents=True, exist_ok=True)
    values = {"status": battery["status"], "present": 1, "capacity": battery["capacity"],
              "voltage_now": battery["voltage_now"], "current_now": current_now, "temp": battery["temp"],
              "technology": battery["technology"], "health": "Good"}
    for name, value in values.items():
        tmp = node / f".{name}.tmp"
        tmp.write_text(f"{value}\n")
        tmp.replace(node / name)  # readers never see a half-written value
    uevent = "POWER_SUPPLY_NAME=battery\n" + "".join(f"POWER_SUPPLY_{k.upper()}={v}\n" for k, v in values.items())
    (node / ".uevent.tmp").write_text(uevent)
    (node / ".uevent.tmp").replace(node / "uevent")
