"""Reading exactly N bytes from a socket: shared by the adb-server client and the virtual device."""
from __future__ import annotations

import socket


def recv_exact(sock: socket.socket, size: int, peer: str = "peer") -> bytes:
    """``size`` bytes, or ConnectionResetError naming ``peer`` if it closes first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError(f"{peer} closed the connection")
        data += chunk
    return bytes(data)
