"""The one interface every ADB transport implements, so the profiler never knows which it got.

Implementations: adb-shell over TCP or USB (``adb_shell_transport``) and the adb server,
through the ``adb`` binary or its socket protocol (``adb_server``). ``connect`` picks one.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


class TransportError(Exception):
    """The link to the device failed (disconnected, refused, timed out)."""


class DeviceUnauthorizedError(TransportError):
    """The phone has not accepted this host's RSA key ("unauthorized" in `adb devices`)."""


class DeviceStorageFullError(TransportError):
    """A push failed because the device has no space left."""


class DeviceNotFoundError(TransportError):
    """No device with that serial (or no device at all) is attached."""


class DeviceDisconnectedError(TransportError):
    """The connection dropped mid-command; ``reconnect()`` may bring it back, the command's output is lost."""


class CommandTimeoutError(TransportError):
    """A shell command ran past its timeout; the transport killed it and is ready for the next command."""


@dataclass
class ShellResult:
    """What a shell command printed and its exit status (None where the transport cannot tell)."""

    stdout: str
    exit_code: int | None
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code in (0, None)


@runtime_checkable
class Transport(Protocol):
    """A connection to one device."""

    serial: str

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        """Run ``command`` with /system/bin/sh. Values inside it must already be quoted (``quote``)."""

    def push(self, local: Path | str, remote: str, mode: int = 0o644) -> None:
        """Copy a host file to the device."""

    def pull(self, remote: str, local: Path | str) -> None:
        """Copy a device file to the host."""

    def reconnect(self) -> None:
        """Drop the link and open it again (after a DeviceDisconnectedError); raises TransportError if it cannot."""

    def close(self) -> None:
        """Release the connection."""


def quote(value: object) -> str:
    """Quote one value for the device's POSIX shell; every value that goes into a command goes through here."""
    return shlex.quote(str(value))
