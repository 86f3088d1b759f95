"""What the virtual device pretends to be: properties, CPUs, battery, thermal zones, keys and faults.

Loaded from a JSON or YAML file (``mobile-compress virtual-device --config FILE``); every
field has a default, so an empty file gives a plausible arm64 phone. AUTH is required by
default: its shell runs as the user who started it, so only that user's own adb key (or the
keys the config lists) may open it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from android_harness.transport import keys
from android_harness.virtual_device import auth
from android_harness.virtual_device.faults import Faults
from mobile_compress.errors import UserError

DEFAULT_PROPS = {
    "ro.product.name": "mc_virtual",
    "ro.product.model": "Virtual Phone",
    "ro.product.device": "mc_virtual",
    "ro.product.manufacturer": "mobile-compress",
    "ro.product.brand": "mobile-compress",
    "ro.soc.manufacturer": "QTI",
    "ro.soc.model": "SM8550",
    "ro.board.platform": "kalama",
    "ro.hardware": "qcom",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.serialno": "MCVIRTUAL0001",
}
# Big.LITTLE layout of a Snapdragon 8 Gen 2 (1 + 4 + 3), in kHz as cpufreq reports them.
DEFAULT_CPU_MAX_KHZ = [2016000, 2016000, 2016000, 2803200, 2803200, 2803200, 2803200, 3187200]


@dataclass
class BatteryConfig:
    """Battery state as the sysfs power_supply node reports it (µA, µV, tenths of °C)."""

    capacity: int = 80
    status: str = "Discharging"  # Charging, Discharging, Full, Not charging
    usb_online: bool = False
    ac_online: bool = False
    voltage_now: int = 3950000
    current_now: int = -250000  # idle; negative while discharging, as Pixel kernels report it
    load_current_now: int = -950000  # while the fake benchmark_model runs inferences
    temp: int = 285
    technology: str = "Li-ion"


@dataclass
class ThermalZone:
    name: str
    temp_c: float
    hal_type: int  # Temperature.TYPE_*: 0 CPU, 1 GPU, 2 BATTERY, 3 SKIN, 9 NPU


DEFAULT_ZONES = [ThermalZone("cpu-0-0", 38.2, 0), ThermalZone("cpu-1-0", 40.1, 0), ThermalZone("gpu", 36.0, 1),
                 ThermalZone("battery", 28.5, 2), ThermalZone("skin", 31.4, 3)]


@dataclass
class VirtualDeviceConfig:
    props: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPS))
    cpu_max_khz: list[int] = field(default_factory=lambda: list(DEFAULT_CPU_MAX_KHZ))
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    thermal_zones: list[ThermalZone] = field(default_factory=lambda: list(DEFAULT_ZONES))
    thermal_status: int = 0
    features: list[str] = field(default_factory=lambda: ["shell_v2", "cmd", "stat_v2", "fixed_push_mkdir"])
    authorized_keys: list[str] = field(default_factory=list)  # adb public keys (text); empty: the user's own key
    require_auth: bool = True  # False only with --insecure (or require_auth: false): anyone local gets a shell
    nnapi_accelerators: list[str] = field(default_factory=lambda: ["nnapi-reference"])
    faults: Faults = field(default_factory=Faults)

    @property
    def serialno(self) -> str:
        return self.props.get("ro.serialno", "MCVIRTUAL0001")

    def trusted_keys(self) -> list[str]:
        """The public keys whose holders may open the device: the configured ones, else the starting
        user's own (``~/.android/adbkey.pub``, created like adb does if missing), as adb on the same
        account would sign with. Nothing when AUTH is off."""
        if not self.require_auth:
            return []
        return list(self.authorized_keys) or [keys.public_key_text()]

    def banner(self) -> bytes:
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        props = "".join(f"{k}={self.props.get(k, '')};" for k in keys)
        return f"device::{props}features={','.join(self.features)}".encode()


_FIELDS = {"props", "cpu_max_khz", "battery", "thermal_zones", "thermal_status", "features", "authorized_keys",
           "authorized_key_files", "require_auth", "nnapi_accelerators", "faults"}


def config_from_dict(data: dict, source: str = "<dict>") -> VirtualDeviceConfig:
    """Build a config; unknown fields or wrong types are a UserError naming the file and the field."""
    unknown = set(data) - _FIELDS
    if unknown:
        raise UserError(f"{source}: unknown field(s) {sorted(unknown)}", hint=f"known fields: {', '.join(sorted(_FIELDS))}")
    config = VirtualDeviceConfig()
    try:
        config.props.update({str(k): str(v) for k, v in (data.get("props") or {}).items()})
        if "cpu_max_khz" in data:
            config.cpu_max_khz = [int(v) for v in data["cpu_max_khz"]]
        if "battery" in data:
            config.battery = BatteryConfig(**data["battery"])
        if "thermal_zones" in data:
            config.thermal_zones = [ThermalZone(**zone) for zone in data["thermal_zones"]]
        config.thermal_status = int(data.get("thermal_status", 0))
        if "features" in data:
            config.features = [str(f) for f in data["features"]]
        config.authorized_keys = [str(k) for k in data.get("authorized_keys", [])]
        for path in data.get("authorized_key_files", []):
            config.authorized_keys.append(Path(path).expanduser().read_text())
        for index, text in enumerate(config.authorized_keys):
            try:
                auth.parse_public_key(text)
            except ValueError as err:
                raise ValueError(f"authorized_keys[{index}]: {err} (give the contents of an adbkey.pub, "
                                 "or its path in authorized_key_files)") from None
        config.require_auth = bool(data.get("require_auth", True))
        if "nnapi_accelerators" in data:
            config.nnapi_accelerators = [str(a) for a in data["nnapi_accelerators"]]
        config.faults = Faults.from_dict(data.get("faults"))
    except (TypeError, ValueError, OSError) as err:
        raise UserError(f"{source}: invalid virtual device config: {err}",
                        hint="see android_harness/virtual_device/config.py for the fields and their types") from err
    return config


def load_config(path: Path | str) -> VirtualDeviceConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"virtual device config {path} does not exist", hint="give an existing .json or .yaml file")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text or "{}")
    except Exception as err:  # yaml and json raise different types
        raise UserError(f"{path}: cannot parse: {err}", hint="fix the syntax; JSON or YAML are accepted") from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of fields", hint="e.g. {\"props\": {...}}")
    return config_from_dict(data, str(path))
