"""`mobile-compress quantize --method qat|ptq CHECKPOINT --data DIR --out DIR`: int8 that matches its simulation.

PTQ calibrates the fake-quant model; QAT calibrates it and trains it with the QAT
schedule. Either way the quantized checkpoint is then converted to a full-integer
.tflite carrying its weights and ranges (``OUT/int8/``), checked against the
fake-quant model, and the accuracies are printed side by side.
"""
from __future__ import annotations

import argparse

from converters.config import INT8_IO, LAYOUTS
from workflows.cli.common import add_overwrite_option, add_train_options, print_json, print_problem, train_config
from workflows.compress import Int8Conversion, quantize_and_convert
from mobile_compress.run_folder import claim_out_dir
from mobile_compress.quantization import METHODS, QuantizeJob
from mobile_compress.quantization import default_qat_config
from mobile_compress.report import Column, format_table

EXIT_BELOW_BAR = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="int8 quantization (QAT or PTQ) to a .tflite that matches its simulation",
                       description="Quantize a float checkpoint the way TFLite's int8 kernels compute: PTQ "
                                   "(calibration only) or QAT (calibration, then training with BatchNorm folded "
                                   "and frozen late). Writes the quantized checkpoint and OUT/int8/model_int8.tflite "
                                   "with the trained weights and ranges, checked against the fake-quant model.")
    p.add_argument("checkpoint", help="float checkpoint directory to quantize")
    p.add_argument("--method", choices=METHODS, default="qat", help="qat (default) or ptq")
    p.add_argument("--data", help="training data (default: the checkpoint's)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--calib-images", type=int, default=512, help="images for range calibration (default 512)")
    p.add_argument("--freeze-bn-at", type=float, default=0.5,
                   help="QAT: fraction of training after which BatchNorm statistics freeze (default 0.5)")
    p.add_argument("--freeze-observers-at", type=float, default=0.75,
                   help="QAT: fraction of training after which activation ranges freeze (default 0.75)")
    p.add_argument("--resume", action="store_true", help="QAT: continue an interrupted run in --out")
    add_overwrite_option(p)
    p.add_argument("--no-convert", action="store_true", help="write the quantized checkpoint only")
    d = Int8Conversion()
    p.add_argument("--parity-samples", type=int, default=d.parity_samples,
                   help=f"held-out images for the .tflite check (default {d.parity_samples})")
    p.add_argument("--layout", default=d.layout, choices=LAYOUTS, help=f"TFLite input layout (default {d.layout})")
    p.add_argument("--int8-io", default=d.int8_io, choices=INT8_IO,
                   help=f"int8 model input/output type (default {d.int8_io})")
    p.add_argument("--int8-min-agreement", type=float, default=d.min_agreement,
                   help=f"bar: top-1 agreement of the .tflite with the fake-quant model (default {d.min_agreement:g})")
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_train_options(p, lr_default=f"{default_qat_config().lr:g} for QAT, no warm-up")
    p.set_defaults(run=run)


COLUMNS = [
    Column("model", "model"),
    Column("method", "method"),
    Column("float_top1", "fp32 top-1 %", lambda v: f"{v:.2f}", ">"),
    Column("sim_top1", "fake-quant top-1 %", lambda v: f"{v:.2f}", ">"),
    Column("tflite_agreement", "tflite agrees %", lambda v: f"{100 * v:.1f}", ">"),
    Column("tflite_top1", "tflite top-1 % (parity set)", lambda v: f"{100 * v:.2f}", ">"),
    Column("tflite", "int8 .tflite"),
]


def run(args: argparse.Namespace) -> int:
    claim_out_dir(args.out, resume=args.resume, overwrite=args.overwrite, inputs=[args.checkpoint, args.data])
    defaults = default_qat_config().to_dict()
    job = QuantizeJob(checkpoint=args.checkpoint, out_dir=args.out, method=args.method, data=args.data,
                      config=train_config(args, **defaults), calib_images=args.calib_images,
                      freeze_bn_at=args.freeze_bn_at, freeze_observers_at=args.freeze_observers_at,
                      cache_dir=args.cache_dir, resume=args.resume)
    conversion = None if args.no_convert else Int8Conversion(
        layout=args.layout, int8_io=args.int8_io, parity_samples=args.parity_samples,
        min_agreement=args.int8_min_agreement, progress=not args.json)
    outcome = quantize_and_convert(job, conversion)
    if args.json:
        print_json(outcome.row)
    else:
        print(format_table([outcome.row], COLUMNS))
    for problem in outcome.problems:
        print_problem("quantize", problem)
    return EXIT_BELOW_BAR if outcome.problems else 0
