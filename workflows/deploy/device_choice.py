"""Which phone a deploy (or the demo) runs on: one rule for ``--device auto``, decided before any work.

``deploy --device auto`` needs exactly one attached phone and stops with the fix otherwise;
the demo takes the one phone when there is exactly one and falls back to the host, saying why.
Both read the same list (``android_harness.transport.list_devices``), so they never disagree.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Callable

from android_harness.transport import AttachedDevice, TransportError, list_devices
from mobile_compress.errors import UserError

#: Lists the attached devices for a transport kind (None = automatic); tests pass their own.
Lister = Callable[[str | None], list[AttachedDevice]]

USABLE = "device"
#: What listing can raise: the transport's errors, and starting the adb server (a missing or hung binary).
LIST_ERRORS = (TransportError, OSError, subprocess.SubprocessError)


@dataclass
class DeviceChoice:
    """The phone to use (``serial``), or None for the host, and a sentence saying why."""

    serial: str | None
    reason: str

    @property
    def host(self) -> bool:
        return self.serial is None


def attached(transport: str | None = None, lister: Lister | None = None) -> list[AttachedDevice]:
    """Every device the transport sees, whatever its state (unauthorized and offline ones too)."""
    return list((lister or list_devices)(transport))


def _listed(devices: list[AttachedDevice]) -> str:
    return ", ".join(f"{d.serial} ({d.state})" for d in devices)


def choose_device(requested: str, transport: str | None = None, lister: Lister | None = None) -> str:
    """``auto`` -> the only attached phone; a serial is taken as given. UserError naming --device otherwise."""
    if requested != "auto":
        return requested
    try:
        devices = attached(transport, lister)
    except LIST_ERRORS as err:
        raise UserError(f"--device auto: cannot list Android devices: {err}",
                        hint="name the phone with --device SERIAL (see `mobile-compress devices`), or run with "
                             "--host to measure on this computer") from None
    if not devices:
        raise UserError("--device auto: no Android device is attached",
                        hint="plug a phone in with USB debugging on (or `adb connect HOST:PORT`) and check "
                             "`mobile-compress devices`; or pass --host to measure on this computer's LiteRT")
    if len(devices) > 1:
        raise UserError(f"--device auto: {len(devices)} devices are attached ({_listed(devices)}), so the choice "
                        "is ambiguous", hint=f"name one with --device SERIAL, e.g. --device {devices[0].serial}")
    [device] = devices
    if device.state != USABLE:
        raise UserError(f"--device auto: the only attached device, {device.serial}, is {device.state}",
                        hint="unlock the phone and accept this computer's key at the 'Allow USB debugging?' "
                             "prompt (for 'unauthorized'), or reconnect it (for 'offline'), then run again")
    return device.serial


def find_phone(transport: str | None = None, lister: Lister | None = None) -> DeviceChoice:
    """The demo's rule: the one usable phone if there is exactly one attached, otherwise the host, with why."""
    try:
        devices = attached(transport, lister)
    except LIST_ERRORS as err:
        return DeviceChoice(None, f"Android devices could not be listed ({err})")
    if not devices:
        return DeviceChoice(None, "no Android phone is attached")
    if len(devices) > 1:
        return DeviceChoice(None, f"{len(devices)} devices are attached ({_listed(devices)}); the demo uses a phone "
                                  "only when there is exactly one (`mobile-compress deploy --device SERIAL` picks one)")
    [device] = devices
    if device.state != USABLE:
        return DeviceChoice(None, f"the attached device {device.serial} is {device.state} (accept the "
                                  "'Allow USB debugging?' prompt on the phone)")
    return DeviceChoice(device.serial, f"one phone is attached: {device.serial}")
