"""The virtual device's ADB endpoint: the CNXN/AUTH handshake, then OPEN/OKAY/WRTE/CLSE streams.

One thread per connection reads packets; each stream's service runs in its own thread, so a
service waiting for the host's OKAY (flow control: one WRTE in flight per stream) never
blocks the reader that will deliver it. Listens on 127.0.0.1 only, and by default opens only
for a host that signs the AUTH token with an authorized key (see ``config.trusted_keys``).
"""
from __future__ import annotations

import logging
import queue
import socket
import tempfile
import threading
from pathlib import Path

from android_harness.virtual_device import auth, protocol
from android_harness.virtual_device.config import VirtualDeviceConfig
from android_harness.virtual_device.protocol import Packet
from android_harness.virtual_device.sandbox import Sandbox
from android_harness.virtual_device.shell import ShellService
from android_harness.virtual_device.sync import SyncService

_log = logging.getLogger(__name__)


class Stream:
    """One ADB stream as the device sees it: ``local_id`` is ours, ``remote_id`` the host's."""

    def __init__(self, connection: "Connection", local_id: int, remote_id: int) -> None:
        self.connection, self.local_id, self.remote_id = connection, local_id, remote_id
        self.incoming: queue.Queue[bytes | None] = queue.Queue()
        self.can_send = threading.Event()
        self.can_send.set()
        self.closed = False
        self.on_close = None

    def send(self, data: bytes) -> bool:
        """Send ``data`` in WRTE packets, each after the host's OKAY for the previous one; False once closed."""
        size = self.connection.max_payload
        for start in range(0, len(data), size):
            while not self.can_send.wait(0.2):
                if self.closed or not self.connection.alive:
                    return False
            if self.closed or not self.connection.alive:
                return False
            self.can_send.clear()
            if not self.connection.send(Packet(protocol.WRTE, self.local_id, self.remote_id, data[start:start + size])):
                return False
        return True

    def recv(self) -> bytes | None:
        """The host's next data, or None once the host (or the link) closed the stream."""
        return self.incoming.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.incoming.put(None)  # wake whoever waits in recv(): the host's CLSE will no longer reach us
            self.connection.send(Packet(protocol.CLSE, self.local_id, self.remote_id))
            self.connection.forget(self)

    def host_closed(self) -> None:
        self.incoming.put(None)
        if self.on_close is not None:
            self.on_close()
        self.close()


class Connection:
    """One host connection (an adb server or an adb-shell client)."""

    def __init__(self, device: "VirtualDevice", sock: socket.socket) -> None:
        self.device, self.sock = device, sock
        self.alive = True
        self.online = False
        self.max_payload = protocol.MAX_PAYLOAD
        self.streams: dict[int, Stream] = {}
        self._send_lock = threading.Lock()
        self._next_id = 1
        self._token = b""  # the challenge now outstanding; empty when none (or once answered)
        self._host_version, self._host_maxdata = protocol.VERSION_SKIP_CHECKSUM, protocol.MAX_PAYLOAD

    def send(self, packet: Packet) -> bool:
        with self._send_lock:
            if not self.alive:
                return False
            try:
                self.sock.sendall(packet.encode())
                return True
            except OSError:
                self.drop()
                return False

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.local_id, None)

    def drop(self) -> None:
        """Close the link abruptly (a pulled cable): every stream ends, every command is killed."""
        if not self.alive:
            return
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for stream in list(self.streams.values()):
            stream.closed = True
            stream.incoming.put(None)
            if stream.on_close is not None:
                stream.on_close()
        self.streams.clear()
        self.device._forget(self)

    def run(self) -> None:
        try:
            while self.alive:
                self.handle(protocol.read_packet(self.sock))
        except (OSError, protocol.ProtocolError):
            pass
        finally:
            self.drop()

    def _accept(self, version: int, maxdata: int) -> None:
        self.online = True
        self.max_payload = max(4096, min(maxdata or protocol.MAX_PAYLOAD, protocol.MAX_PAYLOAD))
        self.send(Packet(protocol.CNXN, min(version, protocol.VERSION_SKIP_CHECKSUM), protocol.MAX_PAYLOAD,
                         self.device.config.banner()))

    def _challenge(self) -> None:
        self._token = auth.new_token()
        self.send(Packet(protocol.AUTH, protocol.AUTH_TOKEN, 0, self._token))

    def handle(self, packet: Packet) -> None:
        config = self.device.config
        if packet.command == protocol.CNXN:
            self._host_version, self._host_maxdata = packet.arg0, packet.arg1
            if config.require_auth or config.faults.unauthorized:
                self._challenge()
            else:
                self._accept(packet.arg0, packet.arg1)
        elif packet.command == protocol.AUTH and not self.online:
            # Only a signature of the current token opens the device; each token gets one try. A bare
            # AUTH RSAPUBLICKEY is where adbd asks "Allow USB debugging?": nobody can answer that here,
            # so the host stays unauthorized, even for a key that is on the list (a public key is public).
            if packet.arg0 == protocol.AUTH_SIGNATURE and self._token:
                token, self._token = self._token, b""
                keys = [] if config.faults.unauthorized else self.device.allowed_keys
                if auth.verify(token, packet.payload, keys):
                    self._accept(self._host_version, self._host_maxdata)
                else:
                    self._challenge()
        elif not self.online:
            return  # adbd ignores everything else until the handshake is done
        elif packet.command == protocol.OPEN:
            self._open(packet.arg0, packet.payload.rstrip(b"\0").decode(errors="surrogateescape"))
        elif packet.command == protocol.WRTE:
            stream = self.streams.get(packet.arg1)
            if stream is not None:
                stream.incoming.put(packet.payload)
                self.send(Packet(protocol.OKAY, stream.local_id, stream.remote_id))
        elif packet.command == protocol.OKAY:
            stream = self.streams.get(packet.arg1)
            if stream is not None:
                stream.can_send.set()
        elif packet.command == protocol.CLSE:
            stream = self.streams.get(packet.arg1)
            if stream is not None:
                stream.host_closed()

    def _open(self, remote_id: int, destination: str) -> None:
        service = self.device.service_for(destination)
        if service is None:
            self.send(Packet(protocol.CLSE, 0, remote_id))
            return
        stream = Stream(self, self._next_id, remote_id)
        self._next_id += 1
        self.streams[stream.local_id] = stream
        self.send(Packet(protocol.OKAY, stream.local_id, remote_id))
        threading.Thread(target=self._serve, args=(service, stream, destination), daemon=True).start()

    def _serve(self, service, stream: Stream, destination: str) -> None:
        try:
            service(self, stream, destination)
        finally:
            stream.close()


class VirtualDevice:
    """An ADB device on 127.0.0.1:``port`` (0 picks a free port) over a sandbox in ``workdir``.

    Faults can be changed while it runs through ``config.faults``; call ``publish_faults()``
    after changing the benchmark fault, which a separate process reads.
    """

    def __init__(self, config: VirtualDeviceConfig | None = None, workdir: Path | str | None = None,
                 port: int = 0) -> None:
        self.config = config or VirtualDeviceConfig()
        self.allowed_keys = [auth.parse_public_key(text) for text in self.config.trusted_keys()]
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mc-virtual-device-")
            workdir = self._tmp.name
        self.sandbox = Sandbox(workdir)
        self.sandbox.build(self.config)
        self._requested_port = port
        self._listener: socket.socket | None = None
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1] if self._listener else self._requested_port

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def publish_faults(self) -> None:
        self.config.faults.publish(self.sandbox.state / "faults.json")

    def start(self) -> "VirtualDevice":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(16)
        self._listener = listener
        if not self.config.require_auth:
            _log.warning("virtual device %s: AUTH is OFF: any local user can connect and run commands as the "
                         "user who started it", self.serial)
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def _accept_loop(self) -> None:
        while self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(self, sock)
            with self._lock:
                self._connections.add(connection)
            threading.Thread(target=connection.run, daemon=True).start()

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def disconnect_all(self) -> None:
        """Drop every host connection now (the cable is pulled); the device keeps listening."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.drop()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread: close() alone leaves it blocked
            except OSError:
                pass
            listener.close()
        self.disconnect_all()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "VirtualDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- services -------------------------------------------------------------------------
    def service_for(self, destination: str):
        head, _, _ = destination.partition(":")
        options = head.split(",")
        if options[0] == "shell":
            if "v2" in options and "shell_v2" not in self.config.features:
                return None
            return self._shell
        if options[0] == "exec":
            return self._shell
        if destination.startswith("sync:"):
            return self._sync
        return None

    def _shell(self, connection: Connection, stream: Stream, destination: str) -> None:
        head, _, command = destination.partition(":")
        options = head.split(",")
        fault = self.config.faults.disconnect
        timer = None
        if (fault is not None and fault.during == "shell" and fault.match in command
                and self.config.faults.take("disconnect") is not None):
            timer = threading.Timer(fault.after_seconds, connection.drop)
            timer.daemon = True
            timer.start()
        try:
            ShellService(stream, command, "v2" in options and options[0] == "shell", self.sandbox).run()
        finally:
            if timer is not None:
                timer.cancel()

    def _sync(self, connection: Connection, stream: Stream, destination: str) -> None:
        SyncService(stream, self.sandbox, self.config.faults, connection.drop).run()
