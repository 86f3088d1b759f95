"""Who may enter the virtual device, what its sync service can reach, and what it leaves behind (issue 17).

AUTH is checked with real clients: adb-shell signing with its key, and a raw-protocol client
that only offers a public key (what adbd answers with its "Allow USB debugging?" prompt), and
Google's adb (through a private adb server from test_adb_transport.py) against the default device.
"""
from __future__ import annotations

import builtins
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, utils

from android_harness.transport import DeviceUnauthorizedError, TransportError, keys
from android_harness.transport.adb_shell_transport import AdbShellTransport
from android_harness.virtual_device import protocol
from android_harness.virtual_device.config import VirtualDeviceConfig, config_from_dict
from android_harness.virtual_device.protocol import Packet, read_packet
from android_harness.virtual_device.server import VirtualDevice
from mobile_compress.errors import UserError
from test_adb_transport import _wait_state, adb, adb_server, needs_adb  # noqa: F401 - a private adb server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_key(tmp_path, monkeypatch) -> Path:
    """Never touch the user's ~/.android: each test's key (and HOME) is in tmp."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANDROID_USER_HOME", raising=False)
    path = tmp_path / "keys" / "adbkey"
    monkeypatch.setenv(keys.ENV_KEY, str(path))
    return path


def _open(port: int, key: Path | None = None) -> AdbShellTransport:
    return AdbShellTransport.tcp("127.0.0.1", port, key_path=key, connect_timeout=5.0, auth_timeout=1.0)


class RawHost:
    """An ADB host written with raw packets, to send exactly what a test needs (adb-shell always signs first)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(Packet(protocol.CNXN, protocol.VERSION_SKIP_CHECKSUM, protocol.MAX_PAYLOAD, b"host::\0").encode())

    def send(self, packet: Packet) -> None:
        self.sock.sendall(packet.encode())

    def next(self, wait: float = 5.0) -> Packet | None:
        """The device's next packet, or None if it stays silent for ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            return read_packet(self.sock)
        except socket.timeout:
            return None

    def close(self) -> None:
        self.sock.close()


def _sign(private_key: Path, token: bytes) -> bytes:
    """What adb does with the token: PKCS#1 v1.5 over SHA-1's DigestInfo, the token taken as the digest."""
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    return key.sign(token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))


# ---------------------------------------------------------------- AUTH

def test_public_key_alone_never_opens_the_device(tmp_path, private_key) -> None:
    """A known public key sent without a signature is adbd's "Allow USB debugging?" case: refused here."""
    public = keys.public_key_text(private_key)
    with VirtualDevice(config_from_dict({"authorized_keys": [public]}), workdir=tmp_path / "vd") as dev:
        host = RawHost(dev.port)
        challenge = host.next()
        assert (challenge.command, challenge.arg0, len(challenge.payload)) == (protocol.AUTH, protocol.AUTH_TOKEN, 20)
        host.send(Packet(protocol.AUTH, protocol.AUTH_RSAPUBLICKEY, 0, public.encode() + b"\0"))
        host.send(Packet(protocol.OPEN, 1, 0, f"shell:touch {tmp_path / 'pwned'}\0".encode()))
        assert host.next(wait=1.5) is None  # no CNXN, no OKAY: the device waits for a prompt nobody answers
        assert not (tmp_path / "pwned").exists()
        host.close()

        # The same raw client signing the token with the private key gets in: the refusal above is the check.
        host = RawHost(dev.port)
        token = host.next().payload
        host.send(Packet(protocol.AUTH, protocol.AUTH_SIGNATURE, 0, _sign(private_key, token)))
        assert host.next().command == protocol.CNXN
        host.close()


def test_each_token_is_signed_once_and_a_wrong_signature_gets_a_fresh_token(tmp_path, private_key) -> None:
    with VirtualDevice(config_from_dict({"authorized_keys": [keys.public_key_text(private_key)]}),
                       workdir=tmp_path / "vd") as dev:
        host = RawHost(dev.port)
        first = host.next().payload
        host.send(Packet(protocol.AUTH, protocol.AUTH_SIGNATURE, 0, _sign(private_key, os.urandom(20))))
        second = host.next()
        assert (second.command, second.arg0) == (protocol.AUTH, protocol.AUTH_TOKEN) and second.payload != first
        host.send(Packet(protocol.AUTH, protocol.AUTH_SIGNATURE, 0, _sign(private_key, first)))  # a stale token
        third = host.next()
        assert (third.command, third.arg0) == (protocol.AUTH, protocol.AUTH_TOKEN)
        host.send(Packet(protocol.AUTH, protocol.AUTH_SIGNATURE, 0, _sign(private_key, third.payload)))
        assert host.next().command == protocol.CNXN
        host.close()


def test_adb_shell_with_the_right_key_opens_and_a_wrong_key_does_not(tmp_path, private_key) -> None:
    public = keys.public_key_text(private_key)
    with VirtualDevice(config_from_dict({"authorized_keys": [public]}), workdir=tmp_path / "vd") as dev:
        transport = _open(dev.port, private_key)
        assert transport.shell("echo in").stdout == "in\n"
        transport.close()
        with pytest.raises(DeviceUnauthorizedError, match="Allow"):
            _open(dev.port, tmp_path / "intruder" / "adbkey")  # signs with its key, then offers its public key


def test_default_device_requires_the_starting_users_own_adb_key(tmp_path, monkeypatch) -> None:
    """No config: AUTH on, trusting ~/.android/adbkey.pub (made like adb makes it), as adb on the same account signs."""
    monkeypatch.delenv(keys.ENV_KEY)
    home_key = tmp_path / "home" / ".android" / "adbkey"
    assert not home_key.exists()
    with VirtualDevice(workdir=tmp_path / "vd") as dev:
        assert home_key.is_file() and home_key.with_name("adbkey.pub").is_file()
        assert home_key.stat().st_mode & 0o777 == 0o600
        host = RawHost(dev.port)
        assert host.next().command == protocol.AUTH  # a challenge, not CNXN
        host.send(Packet(protocol.OPEN, 1, 0, f"shell:touch {tmp_path / 'pwned'}\0".encode()))
        assert host.next(wait=1.0) is None and not (tmp_path / "pwned").exists()
        host.close()
        transport = _open(dev.port)  # the default key: the user's own
        assert transport.shell("echo mine").stdout == "mine\n"
        transport.close()
        with pytest.raises(DeviceUnauthorizedError):
            _open(dev.port, tmp_path / "other-user" / "adbkey")


def test_insecure_config_opens_without_auth(tmp_path) -> None:
    config = VirtualDeviceConfig()
    config.require_auth = False
    with VirtualDevice(config, workdir=tmp_path / "vd") as dev:
        host = RawHost(dev.port)
        assert host.next().command == protocol.CNXN
        host.close()


def test_cli_requires_auth_and_insecure_warns_loudly(tmp_path, private_key, capsys) -> None:
    from workflows.cli import main

    assert main(["virtual-device", "--port", "0", "--workdir", str(tmp_path / "a"), "--seconds", "0.1"]) == 0
    captured = capsys.readouterr()
    assert f"auth: required; authorized: {private_key}.pub" in captured.out and "WARNING" not in captured.err
    assert main(["virtual-device", "--port", "0", "--workdir", str(tmp_path / "b"), "--seconds", "0.1",
                 "--insecure"]) == 0
    captured = capsys.readouterr()
    assert "auth: OFF (--insecure)" in captured.out
    assert "WARNING" in captured.err and "without AUTH" in captured.err


def test_a_malformed_authorized_key_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match=r"authorized_keys\[0\]: not an adb public key"):
        config_from_dict({"authorized_keys": ["ssh-rsa AAAAB3Nza me@host"]}, "vd.yaml")


def test_private_key_is_never_readable_by_others_even_for_an_instant(tmp_path, monkeypatch) -> None:
    """The key file has mode 0600 from the call that creates it (not written, then chmod-ed)."""
    key = tmp_path / "fresh" / "adbkey"
    modes: list[int] = []
    real_open, real_os_open = builtins.open, os.open

    def watch(path) -> None:
        if os.path.abspath(os.fspath(path)) == str(key) and key.exists():
            modes.append(key.stat().st_mode & 0o777)

    def spy_open(file, *args, **kwargs):
        handle = real_open(file, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)):
            watch(file)
        return handle

    def spy_os_open(path, *args, **kwargs):
        fd = real_os_open(path, *args, **kwargs)
        watch(path)
        return fd

    old_umask = os.umask(0o022)  # the usual umask: a plain open() would make it 0644
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    try:
        keys.ensure_key(key)
    finally:
        os.umask(old_umask)
    assert modes and all(mode == 0o600 for mode in modes), [oct(m) for m in modes]
    assert key.stat().st_mode & 0o777 == 0o600 and keys.public_key_text(key).split()[0]


# ---------------------------------------------------------------- the sandbox and symlinks

@pytest.fixture
def device(tmp_path, private_key):
    with VirtualDevice(workdir=tmp_path / "vd") as dev:
        yield dev


@pytest.fixture
def phone(device):
    transport = _open(device.port)
    yield transport
    transport.close()


def test_pull_stat_and_list_do_not_follow_a_symlink_out_of_the_sandbox(phone, device, tmp_path) -> None:
    assert phone.shell("ln -s /etc /data/local/tmp/x && ls /data/local/tmp").stdout == "x\n"
    with pytest.raises(TransportError, match="Permission denied"):
        phone.pull("/data/local/tmp/x/hostname", tmp_path / "hostname")
    with pytest.raises(TransportError, match="Permission denied"):
        phone.pull("x/passwd", tmp_path / "passwd")  # relative: /data/local/tmp/x/passwd
    assert not (tmp_path / "hostname").exists() and not (tmp_path / "passwd").exists()
    assert phone._device.stat("/data/local/tmp/x/passwd")[:2] == (0, 0)
    assert [e.filename for e in phone._device.list("/data/local/tmp/x")] == []
    # A symlink that stays inside the sandbox still works.
    phone.shell("mkdir -p /data/local/tmp/real && echo inside > /data/local/tmp/real/f && "
                "ln -s /data/local/tmp/real /data/local/tmp/link")
    phone.pull("/data/local/tmp/link/f", tmp_path / "f")
    assert (tmp_path / "f").read_text() == "inside\n"


def test_push_does_not_follow_a_symlink_out_of_the_sandbox(phone, device, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (device.sandbox.root / "data/local/tmp/d").symlink_to(outside)
    (device.sandbox.root / "data/local/tmp/f").symlink_to(outside / "target")
    (tmp_path / "payload").write_bytes(b"evil")
    for remote in ("/data/local/tmp/d/planted", "/data/local/tmp/d/sub/planted", "/data/local/tmp/f"):
        with pytest.raises(TransportError, match="Permission denied"):
            phone.push(tmp_path / "payload", remote)
    assert list(outside.iterdir()) == []


# ---------------------------------------------------------------- leaks

def test_shell_commands_do_not_leave_threads_behind(phone) -> None:
    phone.shell("true")
    before = threading.active_count()
    for _ in range(100):
        assert phone.shell("true").ok
    deadline = time.monotonic() + 5
    while threading.active_count() > before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threading.active_count() <= before + 3, [t.name for t in threading.enumerate()]


def test_a_stopped_device_leaves_no_thread_behind(tmp_path) -> None:
    before = set(threading.enumerate())
    for index in range(3):
        with VirtualDevice(workdir=tmp_path / f"vd{index}") as dev:
            transport = _open(dev.port)
            transport.shell("true")
            transport.close()
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [t.name for t in set(threading.enumerate()) - before] == []  # the accept loops too


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_removes_its_temporary_sandbox_when_stopped_by_a_signal(tmp_path, private_key, sig) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), keys.ENV_KEY: str(private_key)}
    proc = subprocess.Popen([sys.executable, "-m", "workflows", "virtual-device", "--port", "0"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:  # blocks until the device prints its listing
            lines.append(line)
            if "benchmark binary" in line:
                break
        sandbox = Path(next(l for l in lines if "sandbox:" in l).split("sandbox:")[1].strip())
        workdir = sandbox.parent
        assert workdir.parent == temp and workdir.is_dir(), lines
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not workdir.exists() and list(temp.iterdir()) == []


# ---------------------------------------------------------------- Google's adb on the same account


@needs_adb
def test_googles_adb_and_adb_shell_of_the_same_user_open_the_default_device(adb_server, tmp_path,  # noqa: F811
                                                                             monkeypatch) -> None:
    """The default device trusts ~/.android/adbkey.pub: the key the adb server of that HOME signs with."""
    from android_harness.transport.adb_server import AdbServerSocketTransport

    monkeypatch.setenv("HOME", str(adb_server["home"]))
    monkeypatch.delenv(keys.ENV_KEY)
    with VirtualDevice(workdir=tmp_path / "vd") as dev:
        assert "connected to" in adb("connect", dev.serial).stdout
        _wait_state(dev.serial, "device")
        assert AdbServerSocketTransport(dev.serial).shell("echo adb").stdout == "adb\n"
        transport = _open(dev.port)
        assert transport.shell("echo adb-shell").stdout == "adb-shell\n"
        transport.close()
        adb("disconnect", dev.serial)
    monkeypatch.setenv("HOME", str(tmp_path / "someone-else"))
    with VirtualDevice(workdir=tmp_path / "vd2") as dev:  # another user's device: this adb server's key is not on it
        adb("connect", dev.serial)
        _wait_state(dev.serial, "unauthorized")
        adb("disconnect", dev.serial)
