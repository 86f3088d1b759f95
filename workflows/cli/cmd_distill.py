"""`mobile-compress distill`: train a student zoo model while distilling a teacher checkpoint."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from workflows.cli.cmd_train import SUMMARY_COLUMNS, summary_rows
from workflows.cli.common import (add_model_options, add_overwrite_option, add_train_options,
                                         model_options, print_json, train_config)
from mobile_compress.run_folder import claim_out_dir
from mobile_compress.distillation import LOSSES, DistillConfig
from mobile_compress.distillation import DistillJob, run_distill_job
from mobile_compress.report import format_table
from mobile_compress.training import torchrun_env


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train a student while distilling a teacher (logit KD, hints, attention transfer, RKD)",
        description="Train the zoo model STUDENT on DATA with knowledge distilled from the teacher checkpoint. "
        "The student uses the teacher's normalisation; a teacher trained at another input size gets the batch "
        "resized. Resumable with --resume.",
    )
    p.add_argument("--teacher", required=True, help="teacher checkpoint directory (e.g. runs/r56/best)")
    p.add_argument("--student", required=True, help="student zoo name (see `mobile-compress models`)")
    p.add_argument("--data", required=True, help="ImageFolder directory, .npz file, or 'builtin'")
    p.add_argument("--out", required=True, help="run directory: best/, last/, history.jsonl, train_state.pt")
    g = p.add_argument_group("distillation")
    g.add_argument("--kd", default="logit", help=f"comma-separated losses among {','.join(LOSSES)} (default logit)")
    g.add_argument("--temperature", type=float, default=4.0, help="softmax temperature of logit KD (default 4)")
    g.add_argument("--alpha", type=float, default=0.9, help="weight of the soft targets against the labels (default 0.9)")
    g.add_argument("--hint-weight", type=float, default=1.0)
    g.add_argument("--at-weight", type=float, default=1000.0, help="beta of attention transfer (default 1000)")
    g.add_argument("--rkd-distance-weight", type=float, default=25.0)
    g.add_argument("--rkd-angle-weight", type=float, default=50.0)
    g.add_argument("--hint-layers", help="student:teacher module pairs, comma-separated (default: the last stages)")
    g.add_argument("--at-layers", help="student:teacher module pairs (default: up to 3 stages of equal resolution)")
    g.add_argument("--rkd-layers", help="student:teacher embedding modules (default: the classifiers' inputs)")
    g.add_argument("--cache-teacher", action="store_true",
                   help="compute teacher outputs once per image (logit/rkd only; needs --no-augment)")
    g.add_argument("--no-augment", action="store_false", dest="augment", help="no random crops/flips on training images")
    p.add_argument("--image-size", type=int, help="student input size (default: 32 with --small-input, else the model's own)")
    p.add_argument("--init", help="state_dict to start the student from")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_overwrite_option(p)
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--resize", type=int, help="store images resized to this size before augmentation")
    p.add_argument("--normalization", help="mean/std name (default: the teacher's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_model_options(p)
    add_train_options(p)
    p.set_defaults(run=run)


def distill_config(args: argparse.Namespace) -> DistillConfig:
    return DistillConfig(
        kd=args.kd, temperature=args.temperature, alpha=args.alpha, hint_weight=args.hint_weight,
        at_weight=args.at_weight, rkd_distance_weight=args.rkd_distance_weight,
        rkd_angle_weight=args.rkd_angle_weight, hint_layers=args.hint_layers, at_layers=args.at_layers,
        rkd_layers=args.rkd_layers, cache_teacher=args.cache_teacher, where="distill options",
    )


def run(args: argparse.Namespace) -> int:
    claim_out_dir(args.out, resume=args.resume, overwrite=args.overwrite,
                  inputs=[args.teacher, args.data, args.init])
    job = DistillJob(
        teacher=args.teacher, student=args.student, data=args.data, out_dir=args.out,
        distill=distill_config(args), config=train_config(args), options=model_options(args),
        image_size=args.image_size, init=args.init, resume=args.resume, cache_dir=args.cache_dir,
        storage_size=args.resize, normalization=args.normalization, augment=args.augment,
    )
    result = run_distill_job(job)
    env = torchrun_env()
    if env is not None and env[0] != 0:
        return 0
    if args.json:
        print_json({"checkpoint": str(result.checkpoint), "result": asdict(result.result)})
    else:
        print(format_table(summary_rows(args.student, result), SUMMARY_COLUMNS))
    return 0
