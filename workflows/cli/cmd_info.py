"""`mobile-compress info`: what a checkpoint or a zoo model is, and what it costs."""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import models
from workflows.cli.common import add_model_options, model_options, print_json
from mobile_compress.counting import format_count, model_stats
from mobile_compress.training import load_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint or a zoo model: metadata, parameters, MACs, size")
    p.add_argument("target", help="checkpoint directory/file, or a zoo model name")
    p.add_argument("--input-size", type=int, help="input size for the MAC count (default: the model's)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size for a zoo name (default 1000)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_options(p)
    p.set_defaults(run=run)


def describe(args: argparse.Namespace) -> dict:
    target = Path(args.target)
    if target.exists() or "/" in args.target or target.suffix in (".json", ".pt"):
        model, meta = load_checkpoint(args.target)
        info = {"kind": "checkpoint", "path": args.target, **asdict(meta)}
        size = args.input_size or meta.input_size
    else:
        options = model_options(args)
        model = models.create(args.target, num_classes=args.num_classes, **options)
        spec = models.spec(args.target)
        size = args.input_size or models.default_input_size(args.target, **options)
        info = {"kind": "zoo model", "arch": args.target, "family": spec.family, "options": options,
                "num_classes": args.num_classes, "summary": spec.summary}
    stats = model_stats(model, size)
    info.update(stats_input_size=size, params=stats.params, macs=stats.macs, size_bytes=stats.size_bytes)
    return info


def run(args: argparse.Namespace) -> int:
    info = describe(args)
    if args.json:
        print_json(info)
        return 0
    width = max(len(k) for k in info)
    pretty = {"params": format_count, "macs": format_count, "size_bytes": lambda b: f"{b / 2**20:.2f} MiB"}
    for key, value in info.items():
        print(f"{key:<{width}}  {pretty.get(key, str)(value)}")
    return 0
