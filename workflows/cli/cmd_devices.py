"""`mobile-compress devices`: every attached phone with its model, SoC, Android version, ABI, cores and battery."""
from __future__ import annotations

import argparse
import json

from android_harness import device_info
from android_harness.transport import KINDS, TransportError, connect, list_devices
from mobile_compress.errors import UserError
from mobile_compress.report import Column, format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list attached Android devices (model, SoC, Android, ABI, cores, battery)")
    p.add_argument("--serial", action="append", default=[],
                   help="only this device (repeatable); HOST:PORT connects to a device over TCP first")
    p.add_argument("--transport", choices=KINDS, default=None,
                   help="how to reach devices (default: $MOBILE_COMPRESS_ADB_TRANSPORT, else auto: the adb server "
                        "if one runs or adb can start it, else adb-shell over USB)")
    p.add_argument("--adb-key", default=None, help="ADB private key for adb-shell (default ~/.android/adbkey, "
                                                   "created if missing)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def _describe(serial: str, args: argparse.Namespace) -> dict:
    """One device's row; a device that cannot be read gets its error instead, and the others go on."""
    try:
        transport = connect(serial, args.transport, key_path=args.adb_key)
    except TransportError as err:
        return {"serial": serial, "state": "error", "error": str(err)}
    try:
        info = device_info.collect(transport)
    except TransportError as err:
        return {"serial": serial, "state": "error", "error": str(err)}
    finally:
        transport.close()
    row = info.to_dict()
    row.update(state="device", cores_ghz=info.freq_summary,
               battery_text=_battery_text(info.battery) if info.battery else "?")
    return row


def _battery_text(battery: device_info.BatteryState) -> str:
    parts = [f"{battery.percent:.0f}%" if battery.percent is not None else "?", battery.status_name]
    parts.append("plugged" if battery.plugged else "on battery")
    if battery.temperature_c is not None:
        parts.append(f"{battery.temperature_c:.1f}°C")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    try:
        serials = args.serial or None
        attached = [] if serials else list_devices(args.transport)
    except TransportError as err:
        raise UserError(str(err), hint="install adb or plug the phone in with USB debugging on") from err
    rows = []
    for device in attached:
        if device.state != "device":
            rows.append({"serial": device.serial, "state": device.state,
                         "error": "unlock the phone and accept this computer's key" if device.state == "unauthorized"
                         else f"device is {device.state}"})
    for serial in serials or [d.serial for d in attached if d.state == "device"]:
        rows.append(_describe(serial, args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no Android devices attached (plug one in with USB debugging on, or pass --serial HOST:PORT)")
        return 0
    columns = [Column("serial", "serial"), Column("state", "state"), Column("model", "model"), Column("soc", "SoC"),
               Column("android", "Android"), Column("abi", "ABI"), Column("cores", "cores", str, ">"),
               Column("cores_ghz", "max freq"), Column("battery_text", "battery"), Column("error", "problem")]
    print(format_table(rows, columns, title=f"{len(rows)} device(s)"))
    return 0 if all(r["state"] == "device" for r in rows) else 1
