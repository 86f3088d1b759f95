"""The ``shell:``/``shell,v2:``/``exec:`` services: a device command run by the host's /bin/sh in the sandbox.

Shell v2 sends stdout and stderr as separate packets and ends with an exit-code packet; the
legacy protocol merges them and has no exit code. Closing the stream (the host hung up, timed
out or the link dropped) kills the command's whole process group, as adbd does.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading

from android_harness.transport import shell_v2
from android_harness.virtual_device.sandbox import Sandbox, Unmapper, rewrite


class ShellService:
    def __init__(self, stream, command: str, v2: bool, sandbox: Sandbox) -> None:
        self.stream, self.command, self.v2, self.sandbox = stream, command, v2, sandbox
        self.process: subprocess.Popen | None = None

    def run(self) -> None:
        root = str(self.sandbox.root).encode()
        script = rewrite(self.command.encode(), root) if self.command.strip() else b"exec /bin/sh"
        self.process = subprocess.Popen(
            ["/bin/sh", "-c", script], cwd=self.sandbox.root, env=self.sandbox.env(), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE if self.v2 else subprocess.STDOUT, start_new_session=True)
        self.stream.on_close = self.kill
        pumps = [threading.Thread(target=self._pump, args=(self.process.stdout, shell_v2.STDOUT), daemon=True)]
        if self.v2:
            pumps.append(threading.Thread(target=self._pump, args=(self.process.stderr, shell_v2.STDERR), daemon=True))
        threading.Thread(target=self._feed_stdin, daemon=True).start()
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        code = self.process.wait()
        if self.v2:
            # A command killed by a signal exits like a shell reports it: 128 + signal number.
            status = code if code >= 0 else 128 - code
            self.stream.send(shell_v2.encode(shell_v2.EXIT, bytes([status & 0xFF])))
        self.stream.close()
        self._close_pipes()

    def _close_pipes(self) -> None:
        """Popen leaves its pipes open until garbage collection; a test session of device runs used to
        pass 1,024 open descriptors, past which adb_shell's select() fails."""
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except (OSError, ValueError):
                    pass  # the stdin feeder was writing as the command ended

    def _pump(self, pipe, packet_id: int) -> None:
        unmapper = Unmapper(self.sandbox.root)
        fd = pipe.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            out = unmapper.feed(data) if data else unmapper.flush()
            if out:
                if not self.stream.send(shell_v2.encode(packet_id, out) if self.v2 else out):
                    self.kill()
            if not data:
                return

    def _feed_stdin(self) -> None:
        decoder = _StdinDecoder() if self.v2 else None
        stdin = self.process.stdin
        while True:
            data = self.stream.recv()
            if data is None:
                self.kill()
                return
            try:
                if decoder is None:
                    stdin.write(data)
                    stdin.flush()
                    continue
                for packet_id, payload in decoder.feed(data):
                    if packet_id == shell_v2.STDIN:
                        stdin.write(payload)
                        stdin.flush()
                    elif packet_id == shell_v2.CLOSE_STDIN:
                        stdin.close()
            except (OSError, ValueError):
                pass  # the command closed its stdin or ended

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for sig in (signal.SIGHUP, signal.SIGKILL):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    return


class _StdinDecoder:
    def __init__(self) -> None:
        self.pending = bytearray()

    def feed(self, data: bytes):
        self.pending += data
        while len(self.pending) >= shell_v2.HEADER.size:
            packet_id, length = shell_v2.HEADER.unpack_from(self.pending)
            if len(self.pending) < shell_v2.HEADER.size + length:
                return
            payload = bytes(self.pending[shell_v2.HEADER.size:shell_v2.HEADER.size + length])
            del self.pending[:shell_v2.HEADER.size + length]
            yield packet_id, payload
