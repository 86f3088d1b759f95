"""Argument groups shared by several commands, defined once."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from android_harness.transport import KINDS as TRANSPORT_KINDS
from mobile_compress.report import printable
from mobile_compress.training import TrainConfig
from mobile_compress.training import DEFAULT_RULE

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


def add_train_options(p: argparse.ArgumentParser, lr_default: str | None = None) -> None:
    """The training flags; ``lr_default`` describes a command's own learning rate (a fine-tune's)."""
    g = p.add_argument_group("training", "Left out, batch size, learning rate and warm-up follow the size of the "
                             f"training set: {DEFAULT_RULE.describe()}. A value given here wins.")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help=f"default: {DEFAULT_RULE.max_batch}, or smaller (down to "
                   f"{DEFAULT_RULE.min_batch}) for an epoch of {DEFAULT_RULE.min_steps_per_epoch} steps")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], help="default sgd")
    g.add_argument("--lr", type=float, help="peak learning rate (default: "
                   + (lr_default or f"{DEFAULT_RULE.lr['sgd']:g} with sgd, {DEFAULT_RULE.lr['adamw']:g} with adamw") + ")")
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-epochs", type=float, help=f"default: {100 * DEFAULT_RULE.warmup_fraction:g}%% of the "
                   f"steps, at least {DEFAULT_RULE.min_warmup_steps} steps")
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


def print_problem(command: str, text: str) -> None:
    """A command's failed bar or warning on stderr, with control characters from files and devices shown escaped."""
    print(f"mobile-compress: {command}: {printable(text)}", file=sys.stderr)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))




OVERWRITE_HELP = "replace what --out holds: its earlier results are deleted before this run starts"


def add_overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
