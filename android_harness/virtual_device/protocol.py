"""ADB packets: a 24-byte header (command, arg0, arg1, length, checksum, magic) and a payload.

The same framing runs over TCP and USB; only the device side is needed here. The checksum
is always filled in, since old clients (adb-shell speaks version 0x01000000) verify it.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from android_harness.socket_io import recv_exact

HEADER = struct.Struct("<6I")
VERSION_MIN = 0x01000000
VERSION_SKIP_CHECKSUM = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE, SYNC, STLS = (_cmd(n) for n in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE",
                                                                   b"CLSE", b"SYNC", b"STLS"))
NAMES = {CNXN: "CNXN", AUTH: "AUTH", OPEN: "OPEN", OKAY: "OKAY", WRTE: "WRTE", CLSE: "CLSE", SYNC: "SYNC", STLS: "STLS"}


class ProtocolError(Exception):
    """The peer sent something that is not an ADB packet."""


@dataclass
class Packet:
    command: int
    arg0: int
    arg1: int
    payload: bytes = b""

    @property
    def name(self) -> str:
        return NAMES.get(self.command, hex(self.command))

    def encode(self) -> bytes:
        checksum = sum(self.payload) & 0xFFFFFFFF
        return HEADER.pack(self.command, self.arg0, self.arg1, len(self.payload), checksum,
                           self.command ^ 0xFFFFFFFF) + self.payload




def read_packet(sock: socket.socket) -> Packet:
    command, arg0, arg1, length, _checksum, magic = HEADER.unpack(recv_exact(sock, HEADER.size))
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic in packet {command:#x}")
    if length > 16 * 1024 * 1024:
        raise ProtocolError(f"packet payload of {length} bytes is too large")
    return Packet(command, arg0, arg1, recv_exact(sock, length) if length else b"")
