"""Replacing a folder by a freshly written one so that a kill at any moment loses nothing.

The new folder is written as a hidden sibling ``.NAME.tmp-PID-XXXX``; the old one is renamed
aside to ``.NAME.old-PID-XXXX``, the new one renamed into place, and the old one deleted.
Between the two renames NAME does not exist. ``recover`` repairs what a killed swap left: if
NAME is missing, the newest complete sibling (by its completion marker's mtime) becomes NAME,
and the siblings of dead writers are deleted. Siblings of a live process (a save going on in
another process right now) are never touched.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

TMP, OLD = "tmp", "old"


def new_temp_dir(directory: Path) -> Path:
    """An empty hidden sibling of ``directory`` to write the replacement into."""
    return Path(tempfile.mkdtemp(prefix=f".{directory.name}.{TMP}-{os.getpid()}-", dir=directory.parent))


def replace_dir(tmp: Path, directory: Path) -> None:
    """Rename ``tmp`` to ``directory``; an existing one is moved aside first, put back if the rename fails."""
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}.{OLD}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(directory, old)
    try:
        os.rename(tmp, directory)
    except BaseException:
        if old is not None and not directory.exists():
            os.rename(old, directory)
        raise
    fsync_dir(directory.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover(directory: Path, marker: str, complete: Callable[[Path], bool]) -> None:
    """Finish or undo a swap of ``directory`` that a kill interrupted, and delete its dead leftovers.

    ``marker``: the file written last into a complete folder (its mtime orders the candidates);
    ``complete``: whether a folder holds everything. A ``directory`` that exists but is incomplete
    is not ours to judge: then nothing is touched. Errors (a read-only folder) are logged, not raised.
    """
    leftovers = {p: kind for p, (kind, pid) in _siblings(directory).items() if not _alive(pid)}
    if not leftovers or (directory.exists() and not complete(directory)):
        return
    try:
        if not directory.exists():
            ready = [p for p in leftovers if complete(p)]
            if ready:
                newest = max(ready, key=lambda p: ((p / marker).stat().st_mtime_ns, leftovers[p] == TMP))
                os.rename(newest, directory)
                fsync_dir(directory.parent)
                log.warning("%s was missing after an interrupted save; restored it from %s", directory, newest.name)
                del leftovers[newest]
        for p in leftovers:
            shutil.rmtree(p)
    except OSError as err:
        log.warning("could not clean up after an interrupted save of %s: %s", directory, err)


def _siblings(directory: Path) -> dict[Path, tuple[str, int | None]]:
    """The hidden folders a save of ``directory`` uses, with their kind and writer's PID (None in older names)."""
    parent = directory.parent
    if not parent.is_dir():
        return {}
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.({TMP}|{OLD})-(?:(\d+)-)?[A-Za-z0-9_]+")
    found = {}
    for p in parent.iterdir():
        match = pattern.fullmatch(p.name)
        if match and p.is_dir() and not p.is_symlink():
            found[p] = (match.group(1), int(match.group(2)) if match.group(2) else None)
    return found


def _alive(pid: int | None) -> bool:
    """Whether the writer named in a folder's name is running (a save going on right now)."""
    if pid is None or pid == os.getpid():
        return False  # an older name, or ours: this process saves one folder at a time, so it is left from a failure
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OSError:
        return False
    return True


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
