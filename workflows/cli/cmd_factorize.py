"""`mobile-compress factorize`: low-rank factorisation of a checkpoint, then fine-tuning."""
from __future__ import annotations

import argparse

from workflows.cli.common import add_overwrite_option, add_train_options, print_json, train_config
from mobile_compress.run_folder import claim_out_dir
from mobile_compress.lowrank import FactorizeConfig
from mobile_compress.lowrank import DEFAULT_MULTIPLE
from mobile_compress.lowrank import FactorizeJob, default_finetune_config, run_factorize_job



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "factorize",
        help="low-rank factorisation (SVD, Tucker-2) of a checkpoint, then fine-tuning",
        description="Replace linear and 1x1 conv layers by two thinner ones (truncated SVD) and kxk convs by "
                    "1x1 -> kxk -> 1x1 (Tucker-2), with ranks from a per-layer energy threshold or a "
                    "whole-model target, then fine-tune. Depthwise and grouped convs are left alone. Writes "
                    "OUT/factorized (before fine-tuning), OUT/best and OUT/last (after), and OUT/report.json. With --data "
                    "it fine-tunes for 1 epoch at lr 0.01 unless told otherwise (--epochs 0: evaluate only).",
    )
    p.add_argument("checkpoint", help="checkpoint directory (or its checkpoint.json / weights.pt)")
    p.add_argument("--out", required=True, help="output directory")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--energy", type=float,
                     help="per layer, keep this fraction (0, 1] of the squared singular values (per mode for Tucker-2)")
    how.add_argument("--target", help="whole-model target: macs=F or params=F, F in (0, 1), e.g. macs=0.5")
    p.add_argument("--multiple", type=int, default=DEFAULT_MULTIPLE,
                   help=f"round ranks up to a multiple of this (default {DEFAULT_MULTIPLE})")
    p.add_argument("--include", action="append", default=[],
                   help="only layers whose name matches this fnmatch pattern (repeatable or comma-separated), "
                        "e.g. 'layer3.*'")
    p.add_argument("--exclude", action="append", default=[], help="leave layers matching this pattern alone")
    p.add_argument("--hooi-iterations", type=int, default=2,
                   help="HOOI refinement rounds after the HOSVD start of Tucker-2 (default 2)")
    p.add_argument("--data", help="ImageFolder directory, .npz or 'builtin': evaluation and fine-tuning data")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune in --out (its factorised model is reused as is)")
    add_overwrite_option(p)
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--resize", type=int, help="store images resized to this size first (as in training)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    add_train_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = FactorizeConfig(energy=args.energy, target=args.target, multiple=args.multiple, include=args.include,
                             exclude=args.exclude, hooi_iterations=args.hooi_iterations)
    config.validate(need_input_size=False)  # fail before loading anything
    finetune = default_finetune_config()
    epochs = finetune.epochs if args.epochs is None and args.data else args.epochs
    train = train_config(args, **{**finetune.to_dict(), "epochs": epochs}) if epochs else None
    claim_out_dir(args.out, resume=args.resume, overwrite=args.overwrite, inputs=[args.checkpoint, args.data])
    job = FactorizeJob(checkpoint=args.checkpoint, out_dir=args.out, config=config, data=args.data, train=train,
                       resume=args.resume, cache_dir=args.cache_dir, storage_size=args.resize)
    result = run_factorize_job(job)
    if args.json:
        print_json(result.report)
        return 0
    print(result.table())
    acc = result.accuracy
    if any(v is not None for v in acc.values()):
        shown = [f"{k} {v:.2f}%" for k, v in acc.items() if v is not None]
        print("test top-1: " + ", ".join(shown))
    print(f"factorised checkpoint: {result.factorized}"
          + (f"; fine-tuned: {result.finetuned}" if result.finetuned else "")
          + f"; report: {result.out_dir / 'report.json'}")
    return 0
