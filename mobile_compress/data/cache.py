"""Decoded-image cache: decode a folder once, then open it in a fraction of a second.

An entry is one uint8 ``.npy`` array (N, S, S, 3) plus a JSON index (files, labels,
classes, skipped files). Its name is a hash of everything that decides the pixels
(absolute root, relative paths, file sizes and mtimes, storage size), so a changed,
added or removed file gives a new key and the entry is rebuilt; older entries for
the same root and size are then deleted. Both files are written under a temporary
name and renamed, the index last, so a killed build never leaves a half entry.
The first decode runs in a pool of ``os.cpu_count()`` processes that write straight
into the memory-mapped output file.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from mobile_compress.data.errors import DataError
from mobile_compress.report.atomic import atomic_open

#: Bump when the stored format or the decoding changes, so old entries are ignored.
CACHE_VERSION = 1
ENV_CACHE = "MOBILE_COMPRESS_CACHE"
#: Below this many files the pool costs more than it saves; decode in-process.
POOL_MIN_FILES = 256
_STALE_TMP_SECONDS = 3600


def default_cache_dir() -> Path:
    """``$MOBILE_COMPRESS_CACHE/images`` when the variable is set, else ``~/.cache/mobile-compress/images``."""
    base = os.environ.get(ENV_CACHE)
    if base:
        return Path(base).expanduser() / "images"
    return Path.home() / ".cache" / "mobile-compress" / "images"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The directory to use, created; a DataError if it cannot be written."""
    path = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the image cache folder {path}: {exc.strerror or exc}",
            hint=f"pass a writable cache_dir (--cache-dir) or set {ENV_CACHE} to a writable folder",
        ) from None
    if not os.access(path, os.W_OK):
        raise DataError(
            f"the image cache folder {path} is not writable",
            hint=f"pass a writable cache_dir (--cache-dir) or set {ENV_CACHE} to a writable folder",
        )
    return path


def digest(obj: Any, length: int = 20) -> str:
    """Stable hex hash of a JSON-serialisable object."""
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:length]


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (treated as a miss)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@dataclass
class CachedImages:
    """A loaded entry. ``images[i]`` is file ``files[i]``; rows of skipped files are zero and not in ``rows``."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    classes: list[str]
    skipped: list[tuple[str, str]]
    rows: np.ndarray
    path: Path | None = None
    built: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    #: What ``decode`` returned next to each image (e.g. its original size); only after a build.
    infos: list[Any] | None = None


# ---- worker side: each pool process opens the output file once and writes rows into it ----
_worker: dict[str, Any] = {}


def _init_worker(array_path: str, decode: Callable[[str, int], tuple[np.ndarray, Any]], size: int) -> None:
    _worker["out"] = np.load(array_path, mmap_mode="r+")
    _worker["decode"] = decode
    _worker["size"] = size


def _decode_into(i: int, path: str) -> tuple[int, Any, str | None]:
    try:
        _worker["out"][i], info = _worker["decode"](path, _worker["size"])
    except Exception as exc:  # any undecodable file is skipped, never fatal
        return i, None, f"{type(exc).__name__}: {exc}"
    return i, info, None


def _context() -> Any:
    """fork where available: workers start instantly and inherit the decode function."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)


def resolve_workers(workers: int | None, n: int) -> int:
    if workers is None:
        workers = os.cpu_count() or 1
        if n < POOL_MIN_FILES:
            workers = 1
    return max(1, int(workers))


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None if total >= 2000 else True, leave=False)


class ImageCache:
    """One cache folder of decoded-image entries."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = resolve_cache_dir(cache_dir)

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.npy", self.dir / f"{name}.json"

    def load(self, name: str) -> CachedImages | None:
        """The entry ``name`` or None; an incomplete or inconsistent entry is a miss."""
        npy, index_path = self._paths(name)
        index = read_json(index_path)
        if not index or index.get("version") != CACHE_VERSION or not npy.exists():
            return None
        try:
            images = np.load(npy, mmap_mode="r")
        except (OSError, ValueError):
            return None
        try:
            n = len(index["files"])
            if images.shape != (n, index["size"], index["size"], 3) or images.dtype != np.uint8:
                return None
            return CachedImages(
                images=images,
                labels=np.asarray(index["labels"], dtype=np.int64),
                files=list(index["files"]),
                classes=list(index["classes"]),
                skipped=[(p, r) for p, r in index["skipped"]],
                rows=np.asarray(index["rows"], dtype=np.int64),
                path=npy,
                meta=index.get("meta", {}),
            )
        except (KeyError, TypeError, ValueError):  # an index from another version or a damaged file
            return None

    def build(self, name: str, *, files: Sequence[str], paths: Sequence[str], labels: Sequence[int],
              classes: Sequence[str], size: int, decode: Callable[[str, int], tuple[np.ndarray, Any]],
              workers: int | None = None, replaces: str | None = None,
              meta: dict[str, Any] | None = None, desc: str = "decoding images") -> CachedImages:
        """Decode ``paths`` to (N, size, size, 3) and store the entry under ``name``.

        ``decode(path, size)`` returns ((size, size, 3) uint8 array, info) or raises; files
        that raise are listed in ``skipped``, the infos come back in ``entry.infos``.
        Entries whose name starts with ``replaces`` (same dataset, older contents) are
        removed once the new one is in place.
        """
        n = len(paths)
        npy, index_path = self._paths(name)
        self._check_space(n * size * size * 3)
        self._remove_stale_tmp()
        tmp = self.dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy"
        skipped: list[tuple[str, str]] = []
        infos: list[Any] = [None] * n
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
            w = resolve_workers(workers, n)
            with _progress(n, desc) as bar:
                if w == 1:
                    for i, path in enumerate(paths):
                        try:
                            out[i], infos[i] = decode(path, size)
                        except Exception as exc:  # undecodable file: skip, keep going
                            skipped.append((files[i], f"{type(exc).__name__}: {exc}"))
                        bar.update(1)
                else:
                    out.flush()
                    for i, info, reason in self._decode_parallel(w, tmp, decode, size, paths):
                        if reason is not None:
                            skipped.append((files[i], reason))
                        infos[i] = info
                        bar.update(1)
            out.flush()
            del out
            skipped.sort()
            bad = {f for f, _ in skipped}
            rows = [i for i, f in enumerate(files) if f not in bad]
            os.replace(tmp, npy)
            write_json_atomic(index_path, {
                "version": CACHE_VERSION, "size": size, "files": list(files), "labels": [int(x) for x in labels],
                "classes": list(classes), "skipped": skipped, "rows": rows, "meta": meta or {},
                "created": time.time(),
            })
        finally:
            if tmp.exists():
                tmp.unlink()
        if replaces:
            self.remove_old(replaces, keep=name)
        entry = self.load(name)
        if entry is None:  # pragma: no cover - only if the disk lies to us
            raise DataError(f"the image cache entry {npy} could not be read back after writing it",
                            hint=f"check the disk, or point {ENV_CACHE} at another folder")
        entry.built = True
        entry.infos = infos
        return entry

    @staticmethod
    def _decode_parallel(workers: int, array_path: Path, decode: Callable[[str, int], tuple[np.ndarray, Any]],
                         size: int, paths: Sequence[str]) -> Iterator[tuple[int, Any, str | None]]:
        """(index, info, reason) per path, decoded by ``workers`` processes straight into ``array_path``."""
        chunk = max(1, min(256, len(paths) // (8 * workers)))
        with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker,
                                 initargs=(str(array_path), decode, size)) as pool:
            try:
                yield from pool.map(_decode_into, range(len(paths)), paths, chunksize=chunk)
            except BrokenProcessPool:
                raise DataError(
                    "a decoding process died (out of memory, or a file that crashes the image decoder)",
                    hint="run again with workers=1 (--workers 1) to find the file, then remove it",
                ) from None
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def remove(self, name: str) -> None:
        """Delete entry ``name`` (index first, so it is never seen half-deleted)."""
        npy, index_path = self._paths(name)
        for p in (index_path, npy):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def get_json(self, name: str) -> Any | None:
        return read_json(self.dir / f"{name}.json")

    def put_json(self, name: str, obj: Any) -> None:
        write_json_atomic(self.dir / f"{name}.json", obj)

    def _check_space(self, nbytes: int) -> None:
        free = shutil.disk_usage(self.dir).free
        if nbytes + (64 << 20) > free:
            raise DataError(
                f"the decoded images need {nbytes / 2**30:.1f} GiB in the cache folder {self.dir}, "
                f"which has {free / 2**30:.1f} GiB free",
                hint=f"free space, set {ENV_CACHE} (or --cache-dir) to a bigger disk, or use a smaller image size",
            )

    def remove_old(self, prefix: str, keep: str) -> None:
        """Delete the files starting with ``prefix`` except those of ``keep`` (older contents of one dataset)."""
        for p in self.dir.glob(f"{prefix}*"):
            if not p.name.startswith(keep + "."):
                try:
                    p.unlink()
                except OSError:
                    pass

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for p in self.dir.glob(".*.tmp*"):
            try:
                if now - p.stat().st_mtime > _STALE_TMP_SECONDS:
                    p.unlink()
            except OSError:
                pass
