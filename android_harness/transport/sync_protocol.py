"""The ``sync:`` file-transfer protocol (STAT/LIST/SEND/RECV with DATA/DONE/OKAY/FAIL), both directions.

Each request is a 4-byte id and a little-endian u32 length, then that many bytes (a path;
for SEND, ``path,mode``). File data goes in DATA chunks of at most 64 KiB, ended by DONE
carrying the mtime. The client transport over the adb server socket and the virtual device
share these definitions.
"""
from __future__ import annotations

import struct

MAX_CHUNK = 64 * 1024
HEADER = struct.Struct("<4sI")
STAT_V1 = struct.Struct("<4sIII")  # id, mode, size, mtime
STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")  # id, error, dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime
DENT = struct.Struct("<4sIIII")  # id, mode, size, mtime, name length


def request(ident: bytes, payload: bytes | int = b"") -> bytes:
    """A request or a DATA/DONE/OKAY/FAIL record; an int payload is DONE's mtime or OKAY's zero."""
    if isinstance(payload, int):
        return HEADER.pack(ident, payload)
    return HEADER.pack(ident, len(payload)) + payload


def fail(message: str) -> bytes:
    return request(b"FAIL", message.encode())
