"""The adb server (the daemon every `adb` command talks to), two ways: its socket protocol and the `adb` binary.

The socket protocol (default 127.0.0.1:5037) needs no binary on PATH once a server runs, and
gives exit codes through shell v2. Requests are a 4-hex-digit length and text; replies are
OKAY, or FAIL with a hex length and a message. After ``host:transport:SERIAL`` the socket
belongs to that device, and the next request (``shell,v2,raw:CMD`` or ``sync:``) opens a
stream on it.

The binary transport shells out to ``adb -s SERIAL ...``; it is what users already trust,
and it starts the server when none runs.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from android_harness.socket_io import recv_exact
from android_harness.transport import shell_v2, sync_protocol
from android_harness.transport.base import (CommandTimeoutError, DeviceDisconnectedError, DeviceNotFoundError,
                                            DeviceStorageFullError, DeviceUnauthorizedError, ShellResult,
                                            TransportError, quote)

DEFAULT_PORT = 5037
_EXIT_MARKER = "__mobile_compress_exit__"


def server_address() -> tuple[str, int]:
    """Where the adb server listens: $ADB_SERVER_SOCKET (tcp:HOST:PORT), $ANDROID_ADB_SERVER_PORT, else 127.0.0.1:5037."""
    spec = os.environ.get("ADB_SERVER_SOCKET", "")
    match = re.fullmatch(r"tcp:(?:(.+):)?(\d+)", spec)
    if match:
        return match.group(1) or "127.0.0.1", int(match.group(2))
    port = os.environ.get("ANDROID_ADB_SERVER_PORT", "")
    return "127.0.0.1", int(port) if port.isdigit() else DEFAULT_PORT


@dataclass
class DeviceEntry:
    """One line of ``adb devices -l``."""

    serial: str
    state: str  # device, unauthorized, offline, no permissions, ...
    details: dict[str, str]


def parse_devices_l(text: str) -> list[DeviceEntry]:
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue
        match = re.match(r"(\S+)\s+(no permissions.*?(?=\s+\w+:)|no permissions.*|\S+)\s*(.*)$", line)
        if not match:
            continue
        details = dict(part.split(":", 1) for part in match.group(3).split() if ":" in part)
        entries.append(DeviceEntry(match.group(1), match.group(2).strip(), details))
    return entries


def _error_for(serial: str, message: str) -> TransportError:
    lowered = message.lower()
    if "unauthorized" in lowered:
        return DeviceUnauthorizedError(f"{serial} is unauthorized: unlock the phone and tap 'Allow' on the USB "
                                       f"debugging prompt (tick 'Always allow'), then retry ({message.strip()})")
    if "not found" in lowered or "no devices" in lowered:
        return DeviceNotFoundError(f"device {serial} is not attached to the adb server ({message.strip()}); "
                                   "check `adb devices`, the cable, or `adb connect HOST:PORT`")
    if "offline" in lowered or "closed" in lowered:
        return DeviceDisconnectedError(f"{serial} is offline or dropped the connection ({message.strip()})")
    return TransportError(f"adb server: {message.strip()} (device {serial})")


class AdbServerClient:
    """Host-level requests to the adb server over its socket."""

    def __init__(self, host: str | None = None, port: int | None = None, timeout: float = 10.0) -> None:
        default_host, default_port = server_address()
        self.host, self.port, self.timeout = host or default_host, port or default_port, timeout

    def reachable(self) -> bool:
        try:
            self.request("host:version")
            return True
        except TransportError:
            return False

    def open(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as err:
            raise TransportError(f"no adb server at {self.host}:{self.port} ({err}); start one with `adb start-server`") from err

    @staticmethod
    def send(sock: socket.socket, request: str, serial: str = "") -> None:
        """Send one request and raise on FAIL."""
        data = request.encode()
        sock.sendall(b"%04x" % len(data) + data)
        status = recv_exact(sock, 4, "the adb server")
        if status == b"OKAY":
            return
        if status == b"FAIL":
            raise _error_for(serial or request, _read_hex_string(sock).decode(errors="replace"))
        raise TransportError(f"adb server sent {status!r} to {request!r}")

    def request(self, request: str, serial: str = "") -> str:
        """A host request with a length-prefixed answer (host:version, host:devices-l, host-serial:S:features...)."""
        with self.open() as sock:
            try:
                self.send(sock, request, serial)
                if request == "host:kill":
                    return ""
                return _read_hex_string(sock).decode(errors="replace")
            except OSError as err:
                raise TransportError(f"adb server at {self.host}:{self.port}: {err}") from err

    def devices(self) -> list[DeviceEntry]:
        return parse_devices_l(self.request("host:devices-l"))

    def connect_tcp(self, address: str) -> str:
        answer = self.request(f"host:connect:{address}")
        if "unable" in answer.lower() or "failed" in answer.lower() or "cannot" in answer.lower():
            raise TransportError(f"adb server could not connect to {address}: {answer.strip()}")
        return answer




def _read_hex_string(sock: socket.socket) -> bytes:
    return recv_exact(sock, int(recv_exact(sock, 4, "the adb server"), 16), "the adb server")


class AdbServerSocketTransport:
    """One device through the adb server's socket protocol."""

    kind = "adb-server"

    def __init__(self, serial: str, client: AdbServerClient | None = None, connect_timeout: float = 10.0) -> None:
        self.serial = serial
        self.client = client or AdbServerClient(timeout=connect_timeout)
        self.connect_timeout = connect_timeout
        self._features: set[str] | None = None
        self._check_state()

    def _check_state(self) -> None:
        """Wait out the short states a fresh connection passes through (connecting, authorizing, offline)."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            states = {entry.serial: entry.state for entry in self.client.devices()}
            state = states.get(self.serial)
            if state == "device":
                return
            if state in ("offline", "connecting", "authorizing") and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            if state is None:
                raise DeviceNotFoundError(f"device {self.serial} is not attached to the adb server at {self.client.host}:"
                                          f"{self.client.port} (attached: {', '.join(states) or 'none'})")
            raise _error_for(self.serial, state)

    @property
    def features(self) -> set[str]:
        if self._features is None:
            self._features = set(self.client.request(f"host-serial:{self.serial}:features", self.serial).strip().split(","))
        return self._features

    def _device_socket(self, service: str, timeout: float | None) -> socket.socket:
        sock = self.client.open()
        try:
            self.client.send(sock, f"host:transport:{self.serial}", self.serial)
            self.client.send(sock, service, self.serial)
        except OSError as err:
            sock.close()
            raise DeviceDisconnectedError(f"{self.serial}: the adb server dropped the connection ({err})") from err
        except TransportError:
            sock.close()
            raise
        sock.settimeout(timeout)
        return sock

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        v2 = "shell_v2" in self.features
        service = f"shell,v2,raw:{command}" if v2 else f"shell:({command}\n); echo {_EXIT_MARKER}$?"
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._device_socket(service, timeout)
        decoder, raw = shell_v2.ShellV2Decoder(), bytearray()
        with sock:
            while True:
                if deadline is not None:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(65536)
                except socket.timeout as err:
                    raise CommandTimeoutError(f"`{command}` on {self.serial} did not finish within {timeout:g} s; "
                                              "it was stopped") from err
                except OSError as err:
                    raise DeviceDisconnectedError(f"{self.serial} disconnected during `{command}`: {err}") from err
                if not data:
                    break
                if v2:
                    decoder.feed(data)
                else:
                    raw += data
        if v2:
            if decoder.exit_code is None:
                raise DeviceDisconnectedError(f"{self.serial} disconnected during `{command}` (the stream ended "
                                              "without an exit status)")
            return ShellResult(decoder.stdout.decode(errors="replace"), decoder.exit_code,
                               decoder.stderr.decode(errors="replace"))
        text = raw.decode(errors="replace")
        match = re.search(re.escape(_EXIT_MARKER) + r"(\d+)\s*$", text)
        if not match:
            raise DeviceDisconnectedError(f"{self.serial} disconnected during `{command}`")
        return ShellResult(text[:match.start()], int(match.group(1)))

    def push(self, local: Path | str, remote: str, mode: int = 0o644) -> None:
        local = Path(local)
        if not local.is_file():
            raise TransportError(f"cannot push {local}: no such file on this host")
        sock = self._device_socket("sync:", self.connect_timeout)
        try:
            with sock, local.open("rb") as source:
                sock.sendall(sync_protocol.request(b"SEND", f"{remote},{stat.S_IFREG | mode}".encode()))
                while chunk := source.read(sync_protocol.MAX_CHUNK):
                    sock.sendall(sync_protocol.request(b"DATA", chunk))
                sock.sendall(sync_protocol.request(b"DONE", int(time.time())))
                ident, length = sync_protocol.HEADER.unpack(recv_exact(sock, 8, "the adb server"))
                if ident == b"FAIL":
                    message = recv_exact(sock, length, "the adb server").decode(errors="replace")
                    if "No space left" in message:
                        raise DeviceStorageFullError(f"pushing {local.name} to {remote} on {self.serial} failed: the "
                                                     f"device storage is full ({message}); free space under /data")
                    raise TransportError(f"pushing {local} to {remote} on {self.serial} failed: {message}")
                if ident != b"OKAY":
                    raise TransportError(f"pushing {local} to {remote}: unexpected sync reply {ident!r}")
                sock.sendall(sync_protocol.request(b"QUIT", 0))
        except (OSError, socket.timeout) as err:
            raise DeviceDisconnectedError(f"{self.serial} disconnected during the push of {local.name}: {err}") from err

    def pull(self, remote: str, local: Path | str) -> None:
        local = Path(local)
        partial = local.with_name(local.name + ".partial")
        sock = self._device_socket("sync:", self.connect_timeout)
        try:
            with sock, partial.open("wb") as target:
                sock.sendall(sync_protocol.request(b"RECV", remote.encode()))
                while True:
                    ident, length = sync_protocol.HEADER.unpack(recv_exact(sock, 8, "the adb server"))
                    if ident == b"DATA":
                        target.write(recv_exact(sock, length, "the adb server"))
                    elif ident == b"DONE":
                        break
                    elif ident == b"FAIL":
                        message = recv_exact(sock, length, "the adb server").decode(errors="replace")
                        raise TransportError(f"pulling {remote} from {self.serial} failed: {message}")
                    else:
                        raise TransportError(f"pulling {remote}: unexpected sync reply {ident!r}")
                sock.sendall(sync_protocol.request(b"QUIT", 0))
        except TransportError:
            partial.unlink(missing_ok=True)
            raise
        except (OSError, socket.timeout) as err:
            partial.unlink(missing_ok=True)
            raise DeviceDisconnectedError(f"{self.serial} disconnected during the pull of {remote}: {err}") from err
        partial.replace(local)

    def reconnect(self, wait: float = 15.0) -> None:
        """Re-attach a TCP device (``host:connect``) and wait until the server sees it online again."""
        self._features = None
        deadline = time.monotonic() + wait
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if re.fullmatch(r".+:\d+", self.serial):
                    self.client.connect_tcp(self.serial)
                self._check_state()
                return
            except DeviceUnauthorizedError:
                raise
            except TransportError as err:
                last = err
                time.sleep(0.3)
        raise DeviceDisconnectedError(f"{self.serial} did not come back within {wait:g} s: {last}")

    def close(self) -> None:
        """Nothing to release: every command uses its own socket to the server."""

    def __repr__(self) -> str:
        return f"AdbServerSocketTransport({self.serial!r}, {self.client.host}:{self.client.port})"


def adb_binary(explicit: str | None = None) -> str | None:
    """The adb executable: the argument, $ADB, or `adb` on PATH."""
    candidate = explicit or os.environ.get("ADB") or "adb"
    return shutil.which(candidate)


class AdbBinaryTransport:
    """One device through the `adb` command line (``adb -s SERIAL shell|push|pull``)."""

    kind = "adb-binary"

    def __init__(self, serial: str, adb: str | None = None, server_port: int | None = None,
                 connect_timeout: float = 30.0) -> None:
        path = adb_binary(adb)
        if path is None:
            raise TransportError("no `adb` executable found: install Android platform-tools (Debian/Ubuntu: "
                                 "apt-get install adb) or set $ADB to its path")
        self.adb, self.serial, self.connect_timeout = path, serial, connect_timeout
        host, port = server_address()
        self.server = ["-H", host, "-P", str(server_port or port)]
        state = self._run(["get-state"], connect_timeout)
        if state.returncode != 0 or state.stdout.strip() != "device":
            raise _error_for(serial, (state.stderr or state.stdout).strip() or "not in the device state")

    def _run(self, args: list[str], timeout: float | None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.adb, *self.server, "-s", self.serial, *args], capture_output=True,
                                  text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise CommandTimeoutError(f"`adb {' '.join(args)}` on {self.serial} did not finish within {timeout:g} s; "
                                      "it was stopped") from err

    def _adb_failure(self, stderr: str) -> TransportError | None:
        """An error from adb itself (not from the command), recognised by adb's own messages."""
        match = re.search(r"^(?:adb: )?error: (.*)$", stderr, re.MULTILINE)
        if match and re.search(r"device|closed|offline|unauthorized|not found|no devices|protocol fault", match.group(1)):
            return _error_for(self.serial, match.group(1))
        return None

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        """The exit status is echoed after the command: adb exits 0 when the link drops mid-command
        (adb 29 does), so a missing status is how a disconnect shows."""
        result = self._run(["shell", f"({command}\n); echo {_EXIT_MARKER}$?"], timeout)
        match = re.search(re.escape(_EXIT_MARKER) + r"(\d+)\s*$", result.stdout)
        if match is None:
            failure = self._adb_failure(result.stderr)
            if failure is not None:
                raise failure
            raise DeviceDisconnectedError(f"{self.serial} disconnected during `{command}` (adb exited "
                                          f"{result.returncode} without the command's exit status)")
        return ShellResult(result.stdout[:match.start()], int(match.group(1)), result.stderr)

    def push(self, local: Path | str, remote: str, mode: int = 0o644) -> None:
        local = Path(local)
        if not local.is_file():
            raise TransportError(f"cannot push {local}: no such file on this host")
        result = self._run(["push", str(local), remote], None)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            if "No space left" in message:
                raise DeviceStorageFullError(f"pushing {local.name} to {remote} on {self.serial} failed: the device "
                                             f"storage is full ({message}); free space under /data")
            raise self._adb_failure(message) or TransportError(f"pushing {local} to {remote} failed: {message}")
        self.shell(f"chmod {mode:o} {quote(remote)}", self.connect_timeout)

    def pull(self, remote: str, local: Path | str) -> None:
        result = self._run(["pull", remote, str(local)], None)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            raise self._adb_failure(message) or TransportError(f"pulling {remote} from {self.serial} failed: {message}")

    def reconnect(self, wait: float = 15.0) -> None:
        deadline = time.monotonic() + wait
        message = "offline"
        while time.monotonic() < deadline:
            if re.fullmatch(r".+:\d+", self.serial):
                subprocess.run([self.adb, *self.server, "connect", self.serial], capture_output=True, text=True,
                               timeout=wait)
            state = self._run(["get-state"], wait)
            if state.returncode == 0 and state.stdout.strip() == "device":
                return
            message = (state.stderr or state.stdout).strip() or message
            if "unauthorized" in message:
                break
            time.sleep(0.3)
        raise _error_for(self.serial, message)

    def close(self) -> None:
        """Nothing to release: every command is its own adb process."""

    def __repr__(self) -> str:
        return f"AdbBinaryTransport({self.serial!r}, {self.adb})"
