"""`mobile-compress train`: train or fine-tune a zoo model on a folder, an .npz or the built-in data."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from workflows.cli.common import (add_model_options, add_overwrite_option, add_train_options,
                                         model_options, print_json, train_config)
from mobile_compress.run_folder import claim_out_dir
from mobile_compress.report import Column, format_table
from mobile_compress.training import TrainJob, TrainJobResult, run_train_job
from mobile_compress.training import torchrun_env


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a model",
        description="Train a zoo model. DATA is an ImageFolder directory (with train/ and test/ or val/ "
        "subfolders, or one folder that is split 90/10), an .npz file, or 'builtin'. "
        "Runs under `torchrun --nproc_per_node N -m workflows train ...` for several GPUs.",
    )
    p.add_argument("--model", required=True, help="zoo name (see `mobile-compress models`)")
    p.add_argument("--data", required=True, help="ImageFolder directory, .npz file, or 'builtin'")
    p.add_argument("--out", required=True, help="run directory: best/, last/, history.jsonl, train_state.pt")
    p.add_argument("--image-size", type=int, help="input size (default: 32 with --small-input, else the model's own)")
    p.add_argument("--init", help="state_dict to start from, e.g. a torchvision checkpoint")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_overwrite_option(p)
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--resize", type=int, help="store images resized to this size before augmentation (e.g. to train 32-px models on 8-px images)")
    p.add_argument("--normalization", help="mean/std: imagenet (default for folders), cifar10, digits, or auto (computed from the training images)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_model_options(p)
    add_train_options(p)
    p.set_defaults(run=run)


def summary_rows(name: str, job: TrainJobResult) -> list[dict]:
    last = job.result.epochs[-1] if job.result.epochs else None
    return [{
        "model": name,
        "epochs": len(job.result.epochs),
        "best_top1": job.result.best_val_top1,
        "last_top5": last.val_top5 if last else None,
        "images_per_sec": last.images_per_sec if last else None,
        "minutes": job.result.elapsed / 60,
        "images": f"{job.train_images}+{job.val_images}" + (f" ({job.skipped_images} skipped)" if job.skipped_images else ""),
        "checkpoint": str(job.checkpoint),
    }]


SUMMARY_COLUMNS = [
    Column("model", "model"),
    Column("images", "train+val images"),
    Column("epochs", "epochs", str, ">"),
    Column("best_top1", "best top-1 %", lambda v: f"{v:.2f}", ">"),
    Column("last_top5", "top-5 %", lambda v: f"{v:.2f}", ">"),
    Column("images_per_sec", "img/s", lambda v: f"{v:.0f}", ">"),
    Column("minutes", "min", lambda v: f"{v:.1f}", ">"),
    Column("checkpoint", "checkpoint"),
]


def run(args: argparse.Namespace) -> int:
    claim_out_dir(args.out, resume=args.resume, overwrite=args.overwrite, inputs=[args.data, args.init])
    job = TrainJob(
        model=args.model,
        data=args.data,
        out_dir=args.out,
        config=train_config(args),
        options=model_options(args),
        image_size=args.image_size,
        init=args.init,
        resume=args.resume,
        cache_dir=args.cache_dir,
        storage_size=args.resize,
        normalization=args.normalization,
    )
    result = run_train_job(job)
    env = torchrun_env()
    if env is not None and env[0] != 0:
        return 0  # under torchrun, rank 0 reports for all
    if args.json:
        print_json({"checkpoint": str(result.checkpoint), "result": asdict(result.result)})
    else:
        print(format_table(summary_rows(args.model, result), SUMMARY_COLUMNS))
    return 0
