"""`mobile-compress prune`: structured channel pruning with iterative fine-tuning."""
from __future__ import annotations

import argparse
import copy
import sys
from typing import Callable

from workflows.cli.common import (TRANSPORT_HELP, add_overwrite_option, add_train_options,
                                         print_json, train_config)
from mobile_compress.run_folder import claim_out_dir
from mobile_compress.counting import format_count
from mobile_compress.errors import UserError
from mobile_compress.pruning import PruneConfig, parse_target
from mobile_compress.pruning import ALLOCATIONS, CRITERIA
from mobile_compress.pruning import PruneJob, default_finetune_config, run_prune_job
from mobile_compress.report import Column, format_table
from profiler.latency_table import TABLE_DELEGATES, ObtainedTable, obtain_latency_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="remove channels (structured pruning) to a MAC, parameter or measured-latency target",
        description="Prune CHECKPOINT for real (a physically smaller model) and fine-tune it. --target names the "
        "fraction that REMAINS: macs=0.5 keeps half the MACs (2x fewer), params=0.7, latency=0.6 keeps 60% of "
        "the .tflite latency measured on the host LiteRT interpreter, or on a phone with --latency-device (a "
        "per-layer latency table is measured first unless --latency-table is given). Resumable with --resume.",
    )
    p.add_argument("checkpoint", help="checkpoint directory to prune")
    p.add_argument("--target", required=True, help="METRIC=FRACTION_KEPT: macs=0.5, params=0.7 or latency=0.6")
    p.add_argument("--out", required=True, help="output folder: step_K/, progress.json, final/")
    p.add_argument("--data", help="training images for fine-tuning and the taylor criterion")
    p.add_argument("--steps", type=int, default=1, help="prune in this many steps (default 1)")
    p.add_argument("--epochs-per-step", type=int, default=1, help="fine-tune epochs after each step (0: none)")
    p.add_argument("--criterion", choices=CRITERIA, default="l1", help="channel importance (default l1)")
    p.add_argument("--allocation", choices=ALLOCATIONS, default="global",
                   help="global: cost-aware across layers; uniform: the same fraction of every layer")
    p.add_argument("--multiple", type=int, default=8, help="kept channel counts are multiples of this (default 8)")
    p.add_argument("--min-keep", type=float, default=0.0, metavar="FRACTION",
                   help="keep at least this fraction of every layer's channels (default 0: no floor); at 2x fewer "
                        "MACs on CIFAR-10, 0.3 kept MobileNetV2 within 0.8 points where no floor lost 6.9")
    p.add_argument("--protect", action="append", default=[], metavar="PATTERN",
                   help="never prune layers matching this name pattern (fnmatch; repeatable), e.g. 'features.0.*'")
    p.add_argument("--latency-table", help="per-layer latency table (JSON) for latency targets")
    p.add_argument("--latency-device", metavar="SERIAL",
                   help="measure the latency table on this phone through the profiler (benchmark_model over adb) "
                        "instead of the host LiteRT interpreter")
    p.add_argument("--latency-delegate", choices=TABLE_DELEGATES, default="cpu",
                   help="with --latency-device: the delegate to time on (default cpu, 1 thread)")
    p.add_argument("--transport", help=f"with --latency-device: {TRANSPORT_HELP}")
    p.add_argument("--distill", action="store_true",
                   help="fine-tune with logit distillation from the unpruned model")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_overwrite_option(p)
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_train_options(p, lr_default=f"{default_finetune_config().lr:g}, a fine-tune")
    p.set_defaults(run=run)


def _latency_table(args: argparse.Namespace, say: Callable[[str], None]) -> ObtainedTable:
    obtained = obtain_latency_table(args.checkpoint, args.out, args.latency_table, device=args.latency_device,
                                    delegate=args.latency_delegate, transport=args.transport, progress=say)
    if obtained.measured:
        say(f"latency table written to {obtained.path} (pass it with --latency-table next time)")
    return obtained


def _hook_factory(args: argparse.Namespace):
    if not args.distill:
        return None
    from mobile_compress.distillation import distillation_hook

    return lambda teacher, student: [distillation_hook(copy.deepcopy(teacher), None, student)]


def run(args: argparse.Namespace) -> int:
    target = parse_target(args.target)
    config = PruneConfig(target=target, criterion=args.criterion, allocation=args.allocation,
                         multiple=args.multiple, protect=tuple(args.protect), min_keep=args.min_keep)
    if target.metric != "latency" and (args.latency_device or args.latency_table):
        raise UserError(f"--latency-{'device' if args.latency_device else 'table'} applies to latency targets only, "
                        f"and the target is {target}", hint="use --target latency=0.6, or drop the option")
    claim_out_dir(args.out, resume=args.resume, overwrite=args.overwrite,
                  inputs=[args.checkpoint, args.data, args.latency_table])
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print  # --json: stdout holds the JSON only
    latency = _latency_table(args, say) if target.metric == "latency" else None
    job = PruneJob(checkpoint=args.checkpoint, out_dir=args.out, config=config, data=args.data, steps=args.steps,
                   epochs_per_step=args.epochs_per_step, train=train_config(args, **default_finetune_config().to_dict()),
                   resume=args.resume, latency_table=latency.table if latency else None, cache_dir=args.cache_dir,
                   hook_factory=_hook_factory(args), log=say)
    result = run_prune_job(job)
    if args.json:
        print_json({"checkpoint": str(result.checkpoint), "steps": result.steps, "macs_before": result.macs_before,
                    "macs_after": result.macs_after, "params_before": result.params_before,
                    "params_after": result.params_after, "top1": result.top1, "top1_before": result.top1_before})
        return 0
    rows = [{"model": "before", "macs": result.macs_before, "params": result.params_before, "top1": result.top1_before},
            {"model": "after", "macs": result.macs_after, "params": result.params_after, "top1": result.top1}]
    print(format_table(rows, [Column("model", ""), Column("macs", "MACs", format_count, ">"),
                              Column("params", "params", format_count, ">"),
                              Column("top1", "top-1 %", lambda v: f"{v:.2f}", ">")],
                       title=f"pruned to {target} -> {result.checkpoint}"))
    return 0
