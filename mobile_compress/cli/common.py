"""Argument groups shared by several commands, defined once."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

from android_harness.transport.select import KINDS as TRANSPORT_KINDS
from mobile_compress.errors import UserError
from mobile_compress.training import TrainConfig
from mobile_compress.training.distributed import torchrun_env

# The --transport help of every command that talks to a phone.
TRANSPORT_HELP = "adb transport: " + ", ".join(TRANSPORT_KINDS)


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model options (only those the model family has)")
    g.add_argument("--width-mult", type=float, help="width multiplier (MobileNet families)")
    g.add_argument("--small-input", action="store_true", default=None, help="CIFAR-style stem for 32x32 images, no early downsampling")
    g.add_argument("--dropout", type=float, help="classifier dropout")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    names = {"width_mult": args.width_mult, "small_input": args.small_input, "dropout": args.dropout}
    return {k: v for k, v in names.items() if v is not None}


def add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (defaults from TrainConfig)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=["sgd", "adamw"])
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--workers", type=int, dest="num_workers", help="data-loading worker processes")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--precision", choices=["fp32", "bf16"], help="bf16 autocast roughly doubles CPU throughput on AVX512-BF16/AMX")
    g.add_argument("--max-minutes", type=float, help="time budget: stop after the epoch that crosses it")
    g.add_argument("--no-progress", action="store_false", dest="progress", default=None, help="no progress bars")


def train_config(args: argparse.Namespace, **defaults: Any) -> TrainConfig:
    """A TrainConfig from the given defaults, overridden by what the user typed."""
    fields = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup_epochs",
              "label_smoothing", "seed", "num_workers", "device", "precision", "max_minutes", "progress")
    values = dict(defaults)
    values.update({f: getattr(args, f) for f in fields if getattr(args, f, None) is not None})
    return TrainConfig(**values)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# ----------------------------------------------------------------------------- the run folder (--out)

OVERWRITE_HELP = "replace what --out holds: its earlier results are deleted before this run starts"


def add_overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def claim_out_dir(out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                  resumable: bool = True, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """The one rule for every command that writes a run folder: never merge into, or silently replace, a run.

    A missing or empty folder is used as is. One that holds anything is refused unless
    ``resume`` (the command continues that run) or ``overwrite`` (its contents are deleted
    first, and that is said). ``resumable``: whether the command has --resume, for the hint.
    ``inputs``: files the command reads; --overwrite refuses to delete a folder holding one.
    Under torchrun only rank 0 decides, before any rank writes.
    """
    folder = Path(out).expanduser()
    env = torchrun_env()
    if env is not None and env[0] != 0:
        return folder
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other",
                        hint=f"--resume continues the run in {folder}; --overwrite deletes it and starts again")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file, not a folder", hint="pass a folder for the run's results")
    held = sorted(folder.iterdir()) if folder.is_dir() else []
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
