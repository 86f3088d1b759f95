"""The run folder a command writes (--out): never merged into, never silently replaced.

One rule for every command and for recipes: a missing or empty folder is used as is; one
that holds anything is refused unless the command continues that run (--resume) or was told
to replace it (--overwrite, which deletes what is there and says so).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Iterable

from mobile_compress.errors import UserError
from mobile_compress.logs import LOG_NAME, log_to_run_folder
from mobile_compress.training.distributed import torchrun_env


def claim_out_dir(out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                  resumable: bool = True, inputs: Iterable[str | os.PathLike | None] = (),
                  keep: Iterable[str | os.PathLike] = ()) -> Path:
    """The one rule for every command that writes a run folder: never merge into, or silently replace, a run.

    A missing or empty folder is used as is. One that holds anything is refused unless
    ``resume`` (the command continues that run) or ``overwrite`` (its contents are deleted
    first, and that is said). ``resumable``: whether the command has --resume, for the hint.
    ``inputs``: files the command reads; --overwrite refuses to delete a folder holding one.
    ``keep``: files in the folder that are no results (a recipe saved in its own run folder):
    they neither block a new run nor are deleted.
    Under torchrun only rank 0 decides, before any rank writes.
    The command's log (``LOG_NAME``) is no result either: it is kept, and the claimed folder receives it.
    """
    folder = _claim(out, resume, overwrite, resumable, inputs, keep)
    log_to_run_folder(folder)
    return folder


def _claim(out: str | os.PathLike, resume: bool, overwrite: bool, resumable: bool,
           inputs: Iterable[str | os.PathLike | None], keep: Iterable[str | os.PathLike]) -> Path:
    folder = Path(out).expanduser()
    env = torchrun_env()
    if env is not None and env[0] != 0:
        return folder
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other",
                        hint=f"--resume continues the run in {folder}; --overwrite deletes it and starts again")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file, not a folder", hint="pass a folder for the run's results")
    kept = {Path(k).expanduser().resolve() for k in keep}
    held = sorted(e for e in folder.iterdir()
                  if e.parent.resolve() / e.name not in kept and e.name != LOG_NAME) if folder.is_dir() else []
    if resume:
        if not held:
            raise UserError(f"nothing to resume: {folder} " + ("is empty" if folder.is_dir() else "does not exist"),
                            hint="drop --resume to start a new run there")
        return folder
    if not held:
        return folder
    if not overwrite:
        hint = ("continue it with --resume, replace it with --overwrite (deletes what is there), "
                "or choose another --out" if resumable else
                "replace it with --overwrite (deletes what is there), or choose another --out")
        raise UserError(f"--out {folder} already holds results: {_listing(held)}", hint=hint)
    _check_deletable(folder, inputs)
    for entry in held:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    print(f"--overwrite: deleted the earlier results in {folder} ({_listing(held)})", file=sys.stderr, flush=True)
    return folder


def _listing(entries: list[Path], most: int = 8) -> str:
    names = [e.name + ("/" if e.is_dir() else "") for e in entries]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _check_deletable(folder: Path, inputs: Iterable[str | os.PathLike | None]) -> None:
    """--overwrite empties a run folder, never the place the user works in nor a folder holding an input."""
    here = folder.resolve()
    cwd = Path.cwd().resolve()
    if here == cwd or here in cwd.parents or here == Path.home().resolve():
        raise UserError(f"--overwrite would empty {folder}, which is the current folder, one above it, or your home",
                        hint="give --out the run's own folder, e.g. --out runs/NAME")
    for item in inputs:
        if item is None or str(item) == "builtin" or str(item).startswith("builtin:"):
            continue
        path = Path(item).expanduser().resolve()
        if not path.exists():
            raise UserError(f"{item} does not exist, so this run would fail after --overwrite deleted {folder}; "
                            "nothing was deleted", hint="fix the path of the input, then run again")
        if path == here or here in path.parents:
            raise UserError(f"--overwrite would delete {item}, which this command reads: it lies in --out {folder}",
                            hint="choose another --out, or move the input out of that folder first")
