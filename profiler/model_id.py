"""Which model a profile run measured: its file's path and content hash, never just its file name.

Two models called ``model.tflite`` in different folders, or a file replaced by another of
the same name, are different models; a run is reused on resume only for the very same
bytes at the very same path. Tables show a model's file name, or, for files of the same
name, as much of their paths as tells them apart (``a/model.tflite``, ``b/model.tflite``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelId:
    """A model file as a profile knows it."""

    path: Path  # absolute, symlinks resolved
    sha256: str  # of the file's bytes; "" when the file cannot be read (its runs are recorded as errors)
    name: str  # shown in tables: the file name, or as much of the path as tells same-named files apart

    @property
    def key(self) -> str:
        return model_key(str(self.path), self.sha256)

    @property
    def tag(self) -> str:
        """A file-name-safe label unique to this path and content (raw folders, device file names)."""
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:8]
        return f"{safe_name(self.path.stem)}-{digest}"


def model_key(path: str, sha256: str) -> str:
    return f"{sha256}:{path}"


def identify(models: Sequence[Path]) -> list[ModelId]:
    """Each distinct model file once, in the given order, with its hash and display name."""
    paths = list(dict.fromkeys(Path(os.path.abspath(m)).resolve() for m in models))
    names = display_names(paths)
    return [ModelId(path=p, sha256=file_sha256(p), name=names[p]) for p in paths]


def display_names(paths: Iterable[Path]) -> dict[Path, str]:
    """Each path's file name, or for files of the same name the shortest path ending that tells them apart."""
    groups: dict[str, list[Path]] = {}
    for p in dict.fromkeys(Path(p) for p in paths):
        groups.setdefault(p.name, []).append(p)
    names: dict[Path, str] = {}
    for group in groups.values():
        for depth in range(1, max(len(p.parts) for p in group) + 1):
            tails = [p.as_posix() if depth >= len(p.parts) else "/".join(p.parts[-depth:]) for p in group]
            if len(set(tails)) == len(group):
                break
        names.update(zip(group, tails))
    return names


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes; "" if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
