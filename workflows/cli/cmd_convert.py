"""`mobile-compress convert`: a checkpoint, .pt2 or .onnx to ONNX and TFLite, with a parity report."""
from __future__ import annotations

import argparse

from converters import ConvertConfig, Thresholds, convert
from converters.config import FORMATS, INT8_IO, INT8_RANGES, LAYOUTS, parse_formats, parse_input_size
from workflows.cli.common import add_overwrite_option, print_json, print_problem
from mobile_compress.run_folder import claim_out_dir

EXIT_BELOW_BAR = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert to ONNX and TFLite (fp32, fp16, dynamic-range and int8) with parity",
                       description="Convert a checkpoint, a torch.export program (.pt2) or an .onnx file to ONNX and "
                                   "TFLite, and check every artifact against the original on real images. Writes the "
                                   "artifacts and report.json to --out; exits 1 if an artifact breaks a threshold.")
    p.add_argument("source", help="checkpoint directory, .pt2 (torch.export.save) or .onnx file")
    p.add_argument("--out", required=True, help="output directory (artifacts and report.json)")
    add_overwrite_option(p)
    p.add_argument("--formats", default=",".join(FORMATS),
                   help=f"comma-separated subset of {','.join(FORMATS)} or 'all' (default all)")
    p.add_argument("--calib", help="calibration/parity data: image folder, .npz or 'builtin' "
                                   "(default: the checkpoint's training data)")
    p.add_argument("--input-size", help="HEIGHTxWIDTH or one side (needed for sources with a dynamic size)")
    p.add_argument("--layout", default="nhwc", choices=LAYOUTS, help="TFLite input layout (default nhwc, Android's)")
    p.add_argument("--int8-io", default="int8", choices=INT8_IO, help="int8 model input/output type (default int8)")
    p.add_argument("--int8-ranges", default="auto", choices=INT8_RANGES,
                   help="int8 activation ranges: observers (our post-training calibration), onnx2tf (TFLite's), "
                        "or auto (default: observers for checkpoints, onnx2tf for .pt2/.onnx)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, the dynamo exporter's minimum)")
    p.add_argument("--batch-size", type=int, default=1, help="fixed batch dimension (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX artifact with a dynamic batch dimension")
    p.add_argument("--normalization", choices=("imagenet", "cifar10", "digits"),
                   help="mean/std for .pt2/.onnx sources (checkpoints carry their own)")
    p.add_argument("--calib-samples", type=int, default=100, help="images for int8 calibration (default 100)")
    p.add_argument("--parity-samples", type=int, default=100, help="images for the parity check (default 100)")
    p.add_argument("--allow-float-fallback", action="store_true", help="accept int8 models with float ops")
    p.add_argument("--fp32-max-rel-diff", type=float, default=Thresholds.fp32_rel_max_diff,
                   help="ONNX/fp32 bar: max|diff| <= this x max|logit| (default 1e-4)")
    p.add_argument("--fp16-min-cosine", type=float, default=Thresholds.fp16_min_cosine,
                   help="fp16 bar: lowest mean cosine similarity over the parity images (default 0.9999)")
    p.add_argument("--int8-min-agreement", type=float, default=Thresholds.int8_min_top1,
                   help="dynamic/int8 bar: top-1 agreement fraction (default 0.98)")
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    formats = parse_formats(args.formats)
    input_size = parse_input_size(args.input_size) if args.input_size else None
    claim_out_dir(args.out, overwrite=args.overwrite, resumable=False, inputs=[args.source, args.calib])
    config = ConvertConfig(
        source=args.source, out_dir=args.out, formats=formats, calib=args.calib, input_size=input_size,
        layout=args.layout,
        int8_io=args.int8_io, int8_ranges=args.int8_ranges, opset=args.opset, batch_size=args.batch_size, dynamic_batch=args.dynamic_batch,
        normalization=args.normalization, calib_samples=args.calib_samples, parity_samples=args.parity_samples,
        thresholds=Thresholds(args.fp32_max_rel_diff, args.fp16_min_cosine, args.int8_min_agreement,
                              args.allow_float_fallback),
        cache_dir=args.cache_dir, progress=not args.quiet)
    report = convert(config)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.table())
        print(f"report: {report.out_dir}/report.json")
    for problem in report.problems:
        print_problem("convert", problem)
    return 0 if report.passed else EXIT_BELOW_BAR
