"""ADB without the adb server: the pure-Python adb-shell client, over TCP or over USB (libusb).

Useful where no adb binary or server exists (CI boxes, locked-down hosts). adb-shell 0.4.4
has no shell v2 and treats a closed socket as "no data yet", so this module adds both on top
of its packet layer (pinned version; the private calls are ``AdbDevice._open``-level ones):
- shell v2 gives the real exit code; devices without it fall back to an echoed exit marker;
- a socket that returns EOF raises at once instead of spinning until the read timeout;
- a command's timeout is a deadline for the whole command, never a per-read timeout, so a
  benchmark that prints nothing for minutes does not trip the transport.
"""
from __future__ import annotations

import math
import re
import stat
import time
from pathlib import Path

from android_harness.transport import keys, shell_v2
from android_harness.transport.base import (CommandTimeoutError, DeviceDisconnectedError, DeviceNotFoundError,
                                            DeviceStorageFullError, DeviceUnauthorizedError, ShellResult,
                                            TransportError)

DEFAULT_TCP_PORT = 5555
_EXIT_MARKER = "__mobile_compress_exit__"


class _ServiceRejected(Exception):
    """The device answered OPEN with CLSE (the service does not exist there)."""


def _link_errors() -> tuple[type[BaseException], ...]:
    """What adb-shell raises when the link itself fails (besides OSError)."""
    from adb_shell import exceptions as adb_errors

    return (OSError, adb_errors.TcpTimeoutException, adb_errors.AdbTimeoutError, adb_errors.InvalidCommandError,
            adb_errors.InvalidChecksumError, adb_errors.InvalidResponseError, adb_errors.UsbReadFailedError,
            adb_errors.UsbWriteFailedError)


def _tcp_transport_class():
    from adb_shell.transport.tcp_transport import TcpTransport

    class EofAwareTcpTransport(TcpTransport):
        """TcpTransport that reports a closed socket instead of returning b'' forever."""

        def bulk_read(self, numbytes, transport_timeout_s):
            if self._connection is None:
                raise ConnectionResetError("the connection is closed")
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError(f"{self._host}:{self._port} closed the connection")
            return data

    return EofAwareTcpTransport


def _usb_timeout(err: BaseException) -> bool:
    import usb1

    return isinstance(getattr(err, "usb_error", None), usb1.USBErrorTimeout)


def usb_available() -> tuple[bool, str]:
    """Whether USB can be used here, and why not: needs the libusb1 package and the libusb-1.0 library."""
    try:
        import usb1
    except ImportError as err:
        return False, f"the Python package libusb1 is missing ({err}); install mobile-compress with its pinned dependencies"
    try:
        with usb1.USBContext():
            pass
    except (OSError, AttributeError, usb1.USBError) as err:
        return False, (f"libusb-1.0 cannot be loaded ({err}); install it (Debian/Ubuntu: apt-get install libusb-1.0-0) "
                       "or use TCP (adb tcpip 5555) or the adb server")
    return True, ""


class AdbShellTransport:
    """One device through adb-shell: ``AdbShellTransport.tcp("192.168.1.5")`` or ``AdbShellTransport.usb(serial)``."""

    kind = "adb-shell"

    def __init__(self, *, host: str | None = None, port: int = DEFAULT_TCP_PORT, usb_serial: str | None = None,
                 usb: bool = False, key_path: Path | str | None = None, connect_timeout: float = 10.0,
                 auth_timeout: float = 10.0) -> None:
        if host is None and not usb:
            raise ValueError("give host= for TCP or usb=True for USB")
        self.host, self.port, self.usb = host, port, usb
        self.usb_serial = usb_serial
        self.key_path = key_path
        self.connect_timeout = connect_timeout
        self.auth_timeout = auth_timeout
        self.serial = f"{host}:{port}" if host is not None else (usb_serial or "usb")
        self.shell_v2: bool | None = None  # None until the first command tells
        self._device = None
        self._open()

    @classmethod
    def tcp(cls, host: str, port: int = DEFAULT_TCP_PORT, **options) -> "AdbShellTransport":
        return cls(host=host, port=port, **options)

    @classmethod
    def usb_device(cls, serial: str | None = None, **options) -> "AdbShellTransport":
        return cls(usb=True, usb_serial=serial, **options)

    # -- connection -----------------------------------------------------------------------
    def _make_device(self):
        from adb_shell.adb_device import AdbDevice

        if not self.usb:
            return AdbDevice(_tcp_transport_class()(self.host, self.port))
        ok, why = usb_available()
        if not ok:
            raise TransportError(f"cannot use USB: {why}")
        from adb_shell.exceptions import UsbDeviceNotFoundError
        from adb_shell.transport.usb_transport import UsbTransport
        try:
            transport = UsbTransport.find_adb(serial=self.usb_serial)
        except UsbDeviceNotFoundError as err:
            raise DeviceNotFoundError(f"no USB device with ADB enabled{' and serial ' + self.usb_serial if self.usb_serial else ''}: "
                                      f"{err}; check the cable and that USB debugging is on") from err
        self.serial = self.usb_serial or transport.serial_number or "usb"
        return AdbDevice(transport)

    def _open(self) -> None:
        from adb_shell import exceptions as adb_errors

        device = self._make_device()
        signer = keys.load_signer(self.key_path)
        try:
            device.connect(rsa_keys=[signer], transport_timeout_s=self.connect_timeout,
                           auth_timeout_s=self.auth_timeout, read_timeout_s=self.connect_timeout)
        except adb_errors.DeviceAuthError as err:
            device.close()
            raise DeviceUnauthorizedError(self._unauthorized_message()) from err
        except (adb_errors.TcpTimeoutException, adb_errors.AdbTimeoutError) as err:
            device.close()
            # adb-shell sends the public key last and waits auth_timeout for the user to accept it.
            raise DeviceUnauthorizedError(self._unauthorized_message()) from err
        except (OSError, adb_errors.InvalidResponseError, adb_errors.InvalidCommandError,
                adb_errors.InvalidChecksumError) as err:
            device.close()
            raise TransportError(f"cannot connect to {self.serial}: {err}") from err
        self._device = device

    def _unauthorized_message(self) -> str:
        return (f"{self.serial} did not accept this host's ADB key ({keys.ensure_key(self.key_path)}.pub): "
                "unlock the phone and tap 'Allow' on the USB debugging prompt (tick 'Always allow'), then retry")

    def reconnect(self) -> None:
        self.close()
        try:
            self._open()
        except DeviceUnauthorizedError:
            raise
        except TransportError as err:
            raise DeviceDisconnectedError(f"{self.serial} is gone and reconnecting failed: {err}") from err

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None

    def _require(self):
        if self._device is None:
            raise DeviceDisconnectedError(f"{self.serial} is not connected; call reconnect()")
        return self._device

    def _lost(self, err: BaseException, what: str) -> DeviceDisconnectedError:
        self.close()
        return DeviceDisconnectedError(f"{self.serial} disconnected during {what}: {err}")

    # -- streams --------------------------------------------------------------------------
    def _open_stream(self, destination: bytes):
        from adb_shell import constants
        from adb_shell.adb_message import AdbMessage
        from adb_shell.hidden_helpers import _AdbTransactionInfo

        device = self._require()
        with device._local_id_lock:
            device._local_id = device._local_id % (2**32 - 1) + 1
            info = _AdbTransactionInfo(device._local_id, None, self.connect_timeout, self.connect_timeout, None)
        device._io_manager.send(AdbMessage(constants.OPEN, info.local_id, 0, destination + b"\0"), info)
        cmd, info.remote_id, _, _ = device._io_manager.read([constants.OKAY, constants.CLSE], info)
        if cmd == constants.CLSE:
            raise _ServiceRejected(destination.decode(errors="replace"))
        return info

    def _read_stream(self, info, timeout: float | None, what: str):
        """Yield a stream's data until the device closes it; the deadline covers the whole stream."""
        from adb_shell import constants
        from adb_shell import exceptions as adb_errors
        from adb_shell.adb_message import AdbMessage

        device = self._require()
        deadline = None if timeout is None else time.monotonic() + timeout
        no_limit = 0 if self.usb else None  # libusb: 0 waits forever; select(): None does (0 would poll)
        info.read_timeout_s = math.inf
        while True:
            info.transport_timeout_s = no_limit if deadline is None else max(0.01, deadline - time.monotonic())
            try:
                cmd, _, _, data = device._io_manager.read([constants.CLSE, constants.WRTE], info, allow_zeros=True)
            except (adb_errors.TcpTimeoutException, adb_errors.AdbTimeoutError, adb_errors.UsbReadFailedError) as err:
                if isinstance(err, adb_errors.UsbReadFailedError) and not _usb_timeout(err):
                    raise self._lost(err, what) from err
                # Closing the connection is what makes the device kill the command (adbd hangs up its shell).
                self.close()
                raise CommandTimeoutError(f"{what} on {self.serial} did not finish within {timeout:g} s; it was "
                                          "stopped and the connection will be reopened by reconnect()") from err
            except _link_errors() as err:
                raise self._lost(err, what) from err
            if cmd == constants.CLSE:
                device._io_manager.send(AdbMessage(constants.CLSE, info.local_id, info.remote_id), info)
                return
            device._io_manager.send(AdbMessage(constants.OKAY, info.local_id, info.remote_id), info)
            yield data

    # -- Transport ------------------------------------------------------------------------
    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        if self.shell_v2 is not False:
            try:
                info = self._open_stream(b"shell,v2,raw:" + command.encode())
            except _ServiceRejected:
                self.shell_v2 = False
            except _link_errors() as err:
                raise self._lost(err, f"`{command}`") from err
            else:
                self.shell_v2 = True
                decoder = shell_v2.ShellV2Decoder()
                for data in self._read_stream(info, timeout, f"`{command}`"):
                    decoder.feed(data)
                return ShellResult(decoder.stdout.decode(errors="replace"), decoder.exit_code,
                                   decoder.stderr.decode(errors="replace"))
        return self._legacy_shell(command, timeout)

    def _legacy_shell(self, command: str, timeout: float | None) -> ShellResult:
        """Old devices: no exit packets, so the exit status is echoed after the command (stderr is merged)."""
        wrapped = f"({command}\n); echo {_EXIT_MARKER}$?"
        try:
            info = self._open_stream(b"shell:" + wrapped.encode())
        except (_ServiceRejected, *_link_errors()) as err:
            raise self._lost(err, f"`{command}`") from err
        out = b"".join(self._read_stream(info, timeout, f"`{command}`")).decode(errors="replace")
        match = re.search(re.escape(_EXIT_MARKER) + r"(\d+)\s*$", out)
        if not match:
            return ShellResult(out, None)
        return ShellResult(out[:match.start()].replace("\r\n", "\n"), int(match.group(1)))

    def push(self, local: Path | str, remote: str, mode: int = 0o644) -> None:
        from adb_shell import exceptions as adb_errors

        device = self._require()
        local = Path(local)
        if not local.is_file():
            raise TransportError(f"cannot push {local}: no such file on this host")
        try:
            device.push(str(local), remote, st_mode=stat.S_IFREG | mode, transport_timeout_s=self.connect_timeout,
                        read_timeout_s=max(self.connect_timeout, 60.0))
        except adb_errors.PushFailedError as err:
            message = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], (bytes, bytearray)) else str(err)
            if "No space left" in message:
                raise DeviceStorageFullError(f"pushing {local.name} to {remote} on {self.serial} failed: the device "
                                             f"storage is full ({message}); free space under /data") from err
            raise TransportError(f"pushing {local} to {remote} on {self.serial} failed: {message}") from err
        except adb_errors.AdbCommandFailureException as err:
            raise TransportError(f"pushing {local} to {remote} on {self.serial} failed: {err}") from err
        except _link_errors() as err:
            raise self._lost(err, f"push of {local.name}") from err

    def pull(self, remote: str, local: Path | str) -> None:
        from adb_shell import exceptions as adb_errors

        device = self._require()
        local = Path(local)
        partial = local.with_name(local.name + ".partial")
        try:
            device.pull(remote, str(partial), transport_timeout_s=self.connect_timeout,
                        read_timeout_s=max(self.connect_timeout, 60.0))
        except adb_errors.AdbCommandFailureException as err:
            partial.unlink(missing_ok=True)
            raise TransportError(f"pulling {remote} from {self.serial} failed: {err}") from err
        except _link_errors() as err:
            partial.unlink(missing_ok=True)
            raise self._lost(err, f"pull of {remote}") from err
        partial.replace(local)

    def __repr__(self) -> str:
        return f"AdbShellTransport({self.serial!r}, {'usb' if self.usb else 'tcp'})"
