"""Pick a transport: the adb server when one runs (or the adb binary can start it), else adb-shell.

Order, unless ``kind`` or $MOBILE_COMPRESS_ADB_TRANSPORT names one:
1. adb server socket (127.0.0.1:5037, or $ADB_SERVER_SOCKET / $ANDROID_ADB_SERVER_PORT);
2. the `adb` binary, used only to start that server, then the socket again;
3. adb-shell over TCP for a ``HOST:PORT`` serial, else over USB (libusb).
A phone held by a running adb server cannot be opened over USB by adb-shell at the same
time, which is why the server comes first.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from android_harness.transport.adb_server import (AdbBinaryTransport, AdbServerClient, AdbServerSocketTransport,
                                                  adb_binary)
from android_harness.transport.adb_shell_transport import DEFAULT_TCP_PORT, AdbShellTransport, usb_available
from android_harness.transport.base import DeviceNotFoundError, Transport, TransportError

KINDS = ("auto", "adb-server", "adb-binary", "adb-shell-tcp", "adb-shell-usb")
ENV_KIND = "MOBILE_COMPRESS_ADB_TRANSPORT"


@dataclass
class AttachedDevice:
    """A device some transport can see, before connecting to it."""

    serial: str
    state: str  # "device" when usable; "unauthorized", "offline", ...
    via: str  # the transport kind that found it
    details: dict[str, str]


def _is_tcp(serial: str | None) -> bool:
    return bool(serial and re.fullmatch(r"[^\s:]+:\d+", serial))


def _server(start: bool) -> AdbServerClient | None:
    client = AdbServerClient()
    if client.reachable():
        return client
    binary = adb_binary()
    if start and binary:
        subprocess.run([binary, "-P", str(client.port), "start-server"], capture_output=True, timeout=30)
        if client.reachable():
            return client
    return None


def resolve_kind(kind: str | None) -> str:
    kind = kind or os.environ.get(ENV_KIND) or "auto"
    if kind not in KINDS:
        raise TransportError(f"unknown ADB transport {kind!r} (from --transport or ${ENV_KIND}); choose one of {', '.join(KINDS)}")
    return kind


def list_devices(kind: str | None = None) -> list[AttachedDevice]:
    """Devices visible right now, whatever their state (unauthorized ones included)."""
    kind = resolve_kind(kind)
    if kind in ("auto", "adb-server", "adb-binary"):
        client = _server(start=True)
        if client is not None:
            return [AttachedDevice(e.serial, e.state, "adb-server", e.details) for e in client.devices()]
        if kind != "auto":
            raise TransportError("no adb server is running and none could be started; install adb "
                                 "(Debian/Ubuntu: apt-get install adb) or use --transport adb-shell-usb/adb-shell-tcp")
    ok, why = usb_available()
    if not ok:
        if kind == "adb-shell-usb":
            raise TransportError(f"cannot list USB devices: {why}")
        return []
    from adb_shell.transport.usb_transport import UsbTransport
    found = []
    for transport in UsbTransport.find_all_adb_devices():
        found.append(AttachedDevice(transport.serial_number or transport.port_path, "device", "adb-shell-usb", {}))
    return found


def connect(serial: str | None = None, kind: str | None = None, *, key_path: Path | str | None = None,
            connect_timeout: float = 10.0) -> Transport:
    """A connected transport to ``serial`` (or to the only attached device). ``HOST:PORT`` serials are TCP devices."""
    kind = resolve_kind(kind)
    if kind == "adb-shell-tcp" or (kind == "auto" and _is_tcp(serial) and _server(start=True) is None):
        if not serial:
            raise TransportError("adb-shell over TCP needs the device address: --serial HOST:PORT")
        host, _, port = serial.rpartition(":") if _is_tcp(serial) else (serial, "", str(DEFAULT_TCP_PORT))
        return AdbShellTransport.tcp(host, int(port), key_path=key_path, connect_timeout=connect_timeout)
    if kind == "adb-shell-usb":
        return AdbShellTransport.usb_device(serial, key_path=key_path, connect_timeout=connect_timeout)
    client = _server(start=True)
    if client is None:
        if kind in ("adb-server", "adb-binary"):
            raise TransportError("no adb server is running and none could be started; install adb "
                                 "(Debian/Ubuntu: apt-get install adb) or choose --transport adb-shell-usb")
        return AdbShellTransport.usb_device(serial, key_path=key_path, connect_timeout=connect_timeout)
    if _is_tcp(serial) and serial not in {e.serial for e in client.devices()}:
        client.connect_tcp(serial)
    serial = serial or _only_device(client)
    if kind == "adb-binary":
        return AdbBinaryTransport(serial, server_port=client.port, connect_timeout=max(connect_timeout, 30.0))
    return AdbServerSocketTransport(serial, client, connect_timeout=connect_timeout)


def _only_device(client: AdbServerClient) -> str:
    entries = client.devices()
    if not entries:
        raise DeviceNotFoundError("no Android device is attached: plug one in with USB debugging on, or "
                                  "`adb connect HOST:PORT` for one on the network")
    if len(entries) > 1:
        listed = ", ".join(f"{e.serial} ({e.state})" for e in entries)
        raise DeviceNotFoundError(f"{len(entries)} devices are attached ({listed}); choose one with --serial")
    return entries[0].serial
