"""Google's adb client and adb server against the virtual device, and the transports built on them.

The adb server runs on a private port with a private HOME (so its key is made in tmp, never
in ~/.android) and is killed at teardown. Skipped only when no `adb` binary is installed
(Debian/Ubuntu: apt-get install adb; .ci/run installs it).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from android_harness.transport import (CommandTimeoutError, DeviceDisconnectedError, DeviceNotFoundError, DeviceStorageFullError,
                                       DeviceUnauthorizedError, Transport, TransportError, connect, keys,
                                       list_devices)
from android_harness.transport.adb_server import (AdbBinaryTransport, AdbServerClient, AdbServerSocketTransport,
                                                  parse_devices_l)
from android_harness.transport.adb_shell_transport import AdbShellTransport, usb_available
from android_harness.virtual_device.config import config_from_dict
from android_harness.virtual_device.faults import Faults
from android_harness.virtual_device.server import VirtualDevice

ADB = shutil.which("adb")
needs_adb = pytest.mark.skipif(ADB is None, reason="Google's adb client is not installed (apt-get install adb)")


@pytest.fixture(autouse=True)
def private_key(tmp_path, monkeypatch) -> None:
    """adb-shell connections in these tests use a key in tmp, never ~/.android."""
    monkeypatch.setenv(keys.ENV_KEY, str(tmp_path / "mc-key" / "adbkey"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory):
    """A private adb server: its port in $ANDROID_ADB_SERVER_PORT, its HOME (and key) in tmp."""
    home = tmp_path_factory.mktemp("adbhome")
    port = _free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("ANDROID_ADB_SERVER_PORT", str(port))
        mp.delenv("ADB_SERVER_SOCKET", raising=False)
        mp.setenv(keys.ENV_KEY, str(home / "mc" / "adbkey"))
        subprocess.run([ADB, "-P", str(port), "start-server"], check=True, capture_output=True, timeout=30)
        yield {"port": port, "home": home}
        subprocess.run([ADB, "-P", str(port), "kill-server"], capture_output=True, timeout=30)


def adb(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([ADB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def device(adb_server, tmp_path):
    # AUTH is on: the phone has said "Always allow" to the adb server's key and to adb-shell's.
    trusted = [(adb_server["home"] / ".android" / "adbkey.pub").read_text(), keys.public_key_text()]
    with VirtualDevice(config_from_dict({"authorized_keys": trusted}), workdir=tmp_path / "vd") as dev:
        assert "connected to" in adb("connect", dev.serial).stdout
        _wait_state(dev.serial, "device")
        yield dev
        adb("disconnect", dev.serial)


def _wait_state(serial: str, state: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if {e.serial: e.state for e in AdbServerClient().devices()}.get(serial) == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"{serial} never reached {state}: {AdbServerClient().devices()}")


@needs_adb
def test_adb_client_connect_shell_push_pull(device, tmp_path) -> None:
    listed = adb("devices", "-l").stdout
    assert f"{device.serial}" in listed and "model:Virtual_Phone" in listed
    result = adb("-s", device.serial, "shell", "echo hi; getprop ro.product.model; echo oops >&2; exit 5")
    assert (result.stdout, result.stderr, result.returncode) == ("hi\nVirtual Phone\n", "oops\n", 5)
    payload = os.urandom(250_000)
    (tmp_path / "up.bin").write_bytes(payload)
    assert adb("-s", device.serial, "push", str(tmp_path / "up.bin"), "/data/local/tmp/up.bin").returncode == 0
    assert (device.sandbox.root / "data/local/tmp/up.bin").read_bytes() == payload
    assert adb("-s", device.serial, "pull", "/data/local/tmp/up.bin", str(tmp_path / "down.bin")).returncode == 0
    assert (tmp_path / "down.bin").read_bytes() == payload
    assert "up.bin" in adb("-s", device.serial, "shell", "ls", "-l", "/data/local/tmp").stdout
    missing = adb("-s", device.serial, "pull", "/data/local/tmp/none", str(tmp_path / "none"))
    assert missing.returncode != 0 and "No such file or directory" in missing.stdout + missing.stderr


@needs_adb
def test_adb_client_sees_storage_full(device, tmp_path) -> None:
    (tmp_path / "m.tflite").write_bytes(os.urandom(100_000))
    device.config.faults = Faults.from_dict({"storage_full": {"free_bytes": 10_000}})
    result = adb("-s", device.serial, "push", str(tmp_path / "m.tflite"), "/data/local/tmp/m.tflite")
    assert result.returncode != 0 and "remote write failed: No space left on device" in result.stdout + result.stderr


@needs_adb
def test_server_socket_transport(device, tmp_path) -> None:
    assert {e.serial: e.state for e in AdbServerClient().devices()}[device.serial] == "device"
    transport = AdbServerSocketTransport(device.serial)
    assert "shell_v2" in transport.features
    result = transport.shell("echo out; echo err >&2; exit 9")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 9)
    payload = os.urandom(150_000)
    (tmp_path / "a").write_bytes(payload)
    transport.push(tmp_path / "a", "/data/local/tmp/a", 0o700)
    assert transport.shell("stat -c %a /data/local/tmp/a").stdout.strip() == "700"
    transport.pull("/data/local/tmp/a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == payload
    with pytest.raises(TransportError, match="No such file"):
        transport.pull("/data/local/tmp/none", tmp_path / "none")
    device.config.faults = Faults.from_dict({"storage_full": {"free_bytes": 0}})
    with pytest.raises(DeviceStorageFullError, match="No space left"):
        transport.push(tmp_path / "a", "/data/local/tmp/c")
    with pytest.raises(DeviceNotFoundError):
        AdbServerSocketTransport("127.0.0.1:1")
    with pytest.raises(CommandTimeoutError):
        transport.shell("sleep 20", timeout=0.5)
    assert transport.shell("echo next").stdout == "next\n"  # each command has its own stream


@needs_adb
def test_server_socket_transport_reconnects_after_a_drop(device) -> None:
    transport = AdbServerSocketTransport(device.serial)
    device.config.faults = Faults.from_dict({"disconnect": {"during": "shell", "match": "sleep", "after_seconds": 0.3}})
    with pytest.raises(DeviceDisconnectedError):
        transport.shell("echo a; sleep 5; echo b", timeout=20)
    transport.reconnect()
    assert transport.shell("echo back").stdout == "back\n"


@needs_adb
def test_binary_transport(device, tmp_path) -> None:
    transport = AdbBinaryTransport(device.serial)
    result = transport.shell("echo bin; exit 4")
    assert (result.stdout, result.exit_code) == ("bin\n", 4)
    (tmp_path / "x").write_bytes(b"x" * 70_000)
    transport.push(tmp_path / "x", "/data/local/tmp/x", 0o755)
    assert transport.shell("stat -c %a /data/local/tmp/x").stdout.strip() == "755"
    transport.pull("/data/local/tmp/x", tmp_path / "y")
    assert (tmp_path / "y").read_bytes() == b"x" * 70_000
    device.config.faults = Faults.from_dict({"storage_full": {"free_bytes": 0}})
    with pytest.raises(DeviceStorageFullError, match="No space left"):
        transport.push(tmp_path / "x", "/data/local/tmp/z")
    with pytest.raises(DeviceNotFoundError):
        AdbBinaryTransport("127.0.0.1:1")
    device.config.faults = Faults.from_dict({"disconnect": {"during": "shell", "match": "sleep", "after_seconds": 0.3}})
    with pytest.raises(DeviceDisconnectedError):
        transport.shell("echo a; sleep 5; echo b", timeout=20)
    transport.reconnect()
    assert transport.shell("echo back").stdout == "back\n"


@needs_adb
def test_auto_choice_and_explicit_override(device) -> None:
    attached = {d.serial: d for d in list_devices()}
    assert attached[device.serial].state == "device" and attached[device.serial].via == "adb-server"
    auto = connect(device.serial)
    assert isinstance(auto, AdbServerSocketTransport) and auto.shell("echo auto").stdout == "auto\n"
    assert isinstance(auto, Transport)
    shell_tcp = connect(device.serial, "adb-shell-tcp")
    assert isinstance(shell_tcp, AdbShellTransport) and shell_tcp.shell("echo tcp").exit_code == 0
    shell_tcp.close()
    assert isinstance(connect(device.serial, "adb-binary"), AdbBinaryTransport)
    with pytest.raises(TransportError, match="unknown ADB transport 'bogus'"):
        connect(device.serial, "bogus")


@needs_adb
def test_adb_server_auth_with_its_own_key(adb_server, tmp_path) -> None:
    """The real adb server signs the token with its key in HOME; the device accepts it only if configured."""
    server_key = (adb_server["home"] / ".android" / "adbkey.pub").read_text()
    config = config_from_dict({"authorized_keys": [server_key]})
    with VirtualDevice(config, workdir=tmp_path / "ok") as dev:
        adb("connect", dev.serial)
        _wait_state(dev.serial, "device")
        assert AdbServerSocketTransport(dev.serial).shell("echo authed").stdout == "authed\n"
        adb("disconnect", dev.serial)
    other = keys.public_key_text(tmp_path / "other" / "adbkey")
    with VirtualDevice(config_from_dict({"authorized_keys": [other]}), workdir=tmp_path / "no") as dev:
        adb("connect", dev.serial)
        _wait_state(dev.serial, "unauthorized")
        with pytest.raises(DeviceUnauthorizedError, match="Allow"):
            AdbServerSocketTransport(dev.serial)
        with pytest.raises(DeviceUnauthorizedError):
            AdbBinaryTransport(dev.serial)
        adb("disconnect", dev.serial)


def test_parse_devices_l() -> None:
    text = ("List of devices attached\n"
            "R58N1234ABC            device usb:1-1 product:a55xq model:SM_A5560 device:a55x transport_id:3\n"
            "emulator-5554          unauthorized usb:2-1 transport_id:4\n"
            "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); see "
            "[http://developer.android.com/tools/device.html] usb:3-1 transport_id:5\n")
    entries = parse_devices_l(text)
    assert [(e.serial, e.state) for e in entries][:2] == [("R58N1234ABC", "device"), ("emulator-5554", "unauthorized")]
    assert entries[0].details["model"] == "SM_A5560"
    assert entries[2].state.startswith("no permissions")


def test_usb_needs_libusb_and_says_so(monkeypatch) -> None:
    import usb1

    ok, _ = usb_available()
    if ok:  # a real enumeration through libusb: no phone is attached here
        assert list_devices("adb-shell-usb") == []

    class Broken:
        def __init__(self, *a, **k):
            raise OSError("libusb-1.0.so.0: cannot open shared object file")

    monkeypatch.setattr(usb1, "USBContext", Broken)
    ok, why = usb_available()
    assert not ok and "libusb-1.0" in why and "apt-get install libusb-1.0-0" in why
    with pytest.raises(TransportError, match="cannot use USB: libusb-1.0 cannot be loaded"):
        AdbShellTransport.usb_device()


def test_no_server_and_no_device_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(_free_port()))
    monkeypatch.setenv("ADB", str(tmp_path / "no-adb-here"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not AdbServerClient().reachable()
    with pytest.raises(TransportError, match="no adb server is running"):
        connect("ABC", "adb-server")
    with pytest.raises(TransportError, match="cannot connect to 127.0.0.1:1"):
        connect("127.0.0.1:1")  # no server: a HOST:PORT serial goes to adb-shell over TCP


@needs_adb
def test_devices_command_lists_usable_and_unauthorized_devices(device, tmp_path, capsys) -> None:
    from workflows.cli import main

    other = keys.public_key_text(tmp_path / "other" / "adbkey")
    with VirtualDevice(config_from_dict({"authorized_keys": [other]}), workdir=tmp_path / "locked") as locked:
        adb("connect", locked.serial)
        _wait_state(locked.serial, "unauthorized")
        assert main(["devices"]) == 1  # one device needs the user's attention
        table = capsys.readouterr().out
        assert "Virtual Phone" in table and "SM8550" in table and "1x3.19 + 4x2.80 + 3x2.02 GHz" in table
        assert "80%, discharging, on battery, 28.5°C" in table
        assert "unauthorized" in table and "accept this computer's key" in table
        adb("disconnect", locked.serial)
    assert main(["devices", "--serial", device.serial, "--json"]) == 0
    (row,) = __import__("json").loads(capsys.readouterr().out)
    assert (row["serial"], row["abi"], row["cores"], row["battery"]["level"]) == (device.serial, "arm64-v8a", 8, 80)


def test_virtual_device_command(tmp_path, capsys) -> None:
    from workflows.cli import main

    config = tmp_path / "phone.yaml"
    config.write_text("props: {ro.product.model: Yaml Phone}\n")
    assert main(["virtual-device", "--port", "0", "--config", str(config), "--workdir", str(tmp_path / "w"),
                 "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "virtual device Yaml Phone listening on 127.0.0.1:" in out
    launcher = tmp_path / "w" / "host" / "benchmark_model"
    assert f"benchmark binary for it: {launcher}" in out and os.access(launcher, os.X_OK)
    assert main(["virtual-device", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "virtual device config" in capsys.readouterr().err


def test_key_is_created_once_in_the_standard_place_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(keys.ENV_KEY, raising=False)
    monkeypatch.delenv("ANDROID_USER_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    key = keys.ensure_key()
    assert key == tmp_path / ".android" / "adbkey"
    assert (key.stat().st_mode & 0o777) == 0o600 and key.with_name("adbkey.pub").is_file()
    first = key.read_bytes(), key.with_name("adbkey.pub").read_bytes()
    assert keys.ensure_key() == key
    assert (key.read_bytes(), key.with_name("adbkey.pub").read_bytes()) == first
