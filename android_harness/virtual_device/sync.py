"""The ``sync:`` service: STAT/STA2/LST2, LIST, SEND and RECV over the sandbox, with adbd's failure messages.

Failures read as adbd words them ("write failed: No space left on device", "open failed: No
such file or directory"), because clients print them to users. After a failed SEND the rest
of the upload is read and dropped before FAIL is sent, as adbd does, so the client sees it.
"""
from __future__ import annotations

import errno
import os
import stat

from android_harness.transport import sync_protocol as sp
from android_harness.virtual_device.sandbox import Sandbox


class _Closed(Exception):
    pass


class SyncService:
    def __init__(self, stream, sandbox: Sandbox, faults, drop_connection) -> None:
        self.stream, self.sandbox, self.faults, self.drop_connection = stream, sandbox, faults, drop_connection
        self._buffer = bytearray()
        self._disconnect = None
        self._moved = 0

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self.stream.recv()
            if data is None:
                raise _Closed()
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _count(self, size: int) -> None:
        """Bytes moved so far; the disconnect fault fires once enough went by."""
        self._moved += size
        if self._disconnect is not None and self._moved >= self._disconnect.after_bytes:
            self.drop_connection()
            raise _Closed()

    def run(self) -> None:
        fault = self.faults.disconnect
        if fault is not None and fault.during == "sync":
            self._disconnect = self.faults.take("disconnect")
        try:
            while True:
                ident, length = sp.HEADER.unpack(self._read(8))
                if ident == b"QUIT":
                    break
                path = self._read(length).decode(errors="surrogateescape")
                handler = {b"STAT": self._stat, b"STA2": self._stat_v2, b"LST2": self._stat_v2, b"LIST": self._list,
                           b"SEND": self._send, b"RECV": self._recv}.get(ident)
                if handler is None:
                    self.stream.send(sp.fail(f"unknown sync command {ident!r}"))
                    break
                handler(ident, path)
        except _Closed:
            pass
        finally:
            self.stream.close()

    def _stat(self, _ident: bytes, path: str) -> None:
        try:
            st = os.stat(self.sandbox.sync_path(path))
            self.stream.send(sp.STAT_V1.pack(b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
        except OSError:
            self.stream.send(sp.STAT_V1.pack(b"STAT", 0, 0, 0))

    def _stat_v2(self, ident: bytes, path: str) -> None:
        try:
            host = self.sandbox.sync_path(path, follow_last=ident != b"LST2")
            st = os.lstat(host)
        except OSError as err:
            self.stream.send(sp.STAT_V2.pack(ident, err.errno or errno.ENOENT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            return
        self.stream.send(sp.STAT_V2.pack(ident, 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, 2000, 2000,
                                         st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))

    def _list(self, _ident: bytes, path: str) -> None:
        try:
            host = self.sandbox.sync_path(path)
            names = [".", ".."] + sorted(os.listdir(host))
        except OSError:
            names = []
        for name in names:
            try:
                st = os.lstat(host / name)
            except OSError:
                continue
            raw = name.encode(errors="surrogateescape")
            self.stream.send(sp.DENT.pack(b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)) + raw)
        self.stream.send(sp.DENT.pack(b"DONE", 0, 0, 0, 0))

    def _send(self, _ident: bytes, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"
        mode = int(mode_text) if mode_text.isdigit() else 0o644
        storage = self.faults.storage_full
        limit = None if storage is None else storage.free_bytes
        error, written, out = None, 0, None
        try:
            host = self.sandbox.sync_path(path)
            host.parent.mkdir(parents=True, exist_ok=True)
            out = open(host, "wb")
        except OSError as err:
            error = f"couldn't create file: {err.strerror}"
        mtime = 0
        while True:
            ident, length = sp.HEADER.unpack(self._read(8))
            if ident == b"DONE":
                mtime = length
                break
            if ident != b"DATA":
                error = error or f"invalid data message {ident!r}"
                break
            data = self._read(length)
            self._count(length)
            if error is not None:
                continue  # drain the rest, as adbd does
            if limit is not None and written + length > limit and self.faults.take("storage_full") is not None:
                error = "write failed: No space left on device"
                continue
            out.write(data)
            written += length
        if out is not None:
            out.close()
        if error is not None:
            if out is not None:
                host.unlink(missing_ok=True)
            self.stream.send(sp.fail(error))
            raise _Closed()  # adbd closes the stream after a failed SEND
        os.chmod(host, stat.S_IMODE(mode) or 0o644)
        if mtime:
            os.utime(host, (mtime, mtime))
        self.stream.send(sp.request(b"OKAY", 0))

    def _recv(self, _ident: bytes, path: str) -> None:
        try:
            source = open(self.sandbox.sync_path(path), "rb")
        except OSError as err:
            self.stream.send(sp.fail(f"open failed: {err.strerror}"))
            return
        with source:
            while chunk := source.read(sp.MAX_CHUNK):
                self.stream.send(sp.request(b"DATA", chunk))
                self._count(len(chunk))
        self.stream.send(sp.request(b"DONE", 0))
