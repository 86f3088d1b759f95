"""The shell v2 packet format (``shell,v2:``): stdout, stderr and the exit code, each in its own packet.

Shared by the client transports, which decode it, and the virtual device, which encodes it,
so both sides agree on one definition. A packet is one id byte, a little-endian u32 length
and the payload.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

STDIN, STDOUT, STDERR, EXIT, CLOSE_STDIN, WINDOW_SIZE_CHANGE = 0, 1, 2, 3, 4, 5
HEADER = struct.Struct("<BI")


def encode(packet_id: int, payload: bytes) -> bytes:
    return HEADER.pack(packet_id, len(payload)) + payload


@dataclass
class ShellV2Decoder:
    """Accumulates a shell v2 byte stream that arrives in arbitrary pieces."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    _pending: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= HEADER.size:
            packet_id, length = HEADER.unpack_from(self._pending)
            if len(self._pending) < HEADER.size + length:
                return
            payload = bytes(self._pending[HEADER.size:HEADER.size + length])
            del self._pending[:HEADER.size + length]
            if packet_id == STDOUT:
                self.stdout += payload
            elif packet_id == STDERR:
                self.stderr += payload
            elif packet_id == EXIT and payload:
                self.exit_code = payload[0]
