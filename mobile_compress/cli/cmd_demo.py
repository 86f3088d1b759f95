"""`mobile-compress demo`: the main job on its embedded default, no arguments needed.

Today it trains and evaluates a small student on the built-in dataset (real
handwritten digits shipped inside scikit-learn), so it runs anywhere, offline.
"""
from __future__ import annotations

import argparse

from mobile_compress.cli.cmd_train import SUMMARY_COLUMNS, summary_rows
from mobile_compress.evaluate_job import evaluate_checkpoint
from mobile_compress.report import format_table, write_json
from mobile_compress.train_job import TrainJob, run_train_job
from mobile_compress.training import TrainConfig

DEMO_MODEL = "mobilenet_v2"
DEMO_OPTIONS = {"small_input": True, "width_mult": 0.5}
DEMO_CONFIG = dict(epochs=12, batch_size=64, optimizer="sgd", lr=0.1, weight_decay=5e-4, warmup_epochs=1,
                   label_smoothing=0.1, seed=0, num_workers=0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and evaluate a small student on the built-in dataset (no arguments needed)")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--epochs", type=int, default=DEMO_CONFIG["epochs"])
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(f"demo: training {DEMO_MODEL} {DEMO_OPTIONS} on the built-in digits dataset for {args.epochs} epochs -> {args.out}")
    config = TrainConfig(**{**DEMO_CONFIG, "epochs": args.epochs})
    job = run_train_job(TrainJob(model=DEMO_MODEL, data="builtin", out_dir=args.out, config=config, options=DEMO_OPTIONS))
    ev = evaluate_checkpoint(job.checkpoint, "builtin", split="test")
    print(format_table(summary_rows(DEMO_MODEL, job), SUMMARY_COLUMNS, title="demo result"))
    print(f"held-out test set: top-1 {ev.result.top1:.2f}% on {ev.result.n} images (checkpoint {job.checkpoint})")
    write_json(f"{args.out}/demo.json", {"model": DEMO_MODEL, "options": DEMO_OPTIONS, "test_top1": ev.result.top1,
                                         "test_n": ev.result.n, "checkpoint": str(job.checkpoint)})
    return 0
