"""`mobile-compress eval`: top-1/top-5 of a checkpoint on a dataset."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from workflows.cli.common import print_json
from mobile_compress.training import EvalJob, run_eval_job
from mobile_compress.report import Column, format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint (top-1, top-5)")
    p.add_argument("checkpoint", help="checkpoint directory (or its checkpoint.json / weights.pt)")
    p.add_argument("--data", required=True, help="ImageFolder directory, .npz file, or 'builtin'")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--resize", type=int, help="store images resized to this size first (as in training)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    ev = run_eval_job(EvalJob(args.checkpoint, args.data, args.split, args.batch_size, args.cache_dir, args.resize))
    row = {"checkpoint": ev.checkpoint, "arch": ev.meta.arch, "split": ev.split, **asdict(ev.result)}
    if args.json:
        print_json(row)
        return 0
    print(format_table([row], [
        Column("arch", "model"),
        Column("split", "split"),
        Column("n", "images", str, ">"),
        Column("top1", "top-1 %", lambda v: f"{v:.2f}", ">"),
        Column("top5", "top-5 %", lambda v: f"{v:.2f}", ">"),
        Column("loss", "loss", lambda v: f"{v:.4f}", ">"),
    ]))
    return 0
