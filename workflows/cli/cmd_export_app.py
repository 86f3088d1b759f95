"""`mobile-compress export-app`: a .tflite an Android app loads directly, with labels, model card and Kotlin."""
from __future__ import annotations

import argparse

from converters.app_bundle import APP_FORMATS, AppExportConfig, export_app
from workflows.cli.common import add_overwrite_option, print_json, print_problem
from mobile_compress.run_folder import claim_out_dir

EXIT_BELOW_BAR = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-app", help="app bundle: .tflite with metadata, labels.txt, model card, Kotlin snippet",
        description="Write an app-integration bundle to --out: model.tflite with TFLite metadata (input "
                    "normalisation, RGB image input, labels, descriptions, name/version/author/license) that MediaPipe "
                    "Tasks' ImageClassifier and the TFLite Task Library read, labels.txt, MODEL_CARD.md and "
                    "model_card.json (size, parameters, MACs, accuracy, host latency, input spec) and MainActivity.kt. "
                    "SRC is a checkpoint (converted here, with a parity check), a `mobile-compress convert` output "
                    "directory, or a .tflite with --checkpoint. Exits 1 if the model is below its parity bar.")
    p.add_argument("source", metavar="SRC", help="checkpoint directory, convert output directory, or .tflite file")
    p.add_argument("--out", required=True, help="bundle directory")
    add_overwrite_option(p)
    p.add_argument("--format", default="int8", choices=APP_FORMATS,
                   help="TFLite flavour (default int8: int8 compute, float32 input/output, as MediaPipe needs)")
    p.add_argument("--checkpoint", help="the checkpoint a converted SRC came from (default: the one its report.json "
                                        "names)")
    p.add_argument("--name", help="model name in the metadata (default ARCH-FORMAT)")
    p.add_argument("--version", default="1.0.0", help="model version in the metadata (default 1.0.0)")
    p.add_argument("--license", default="Apache-2.0", help="license in the metadata (default Apache-2.0)")
    p.add_argument("--author", help="author in the metadata")
    p.add_argument("--description", help="model description in the metadata")
    p.add_argument("--data", help="images to measure the .tflite's top-1 on (test split) and to calibrate int8: "
                                  "an image folder, an .npz file or 'builtin'")
    p.add_argument("--labels", dest="labels_file", help="class names, one per line (when the checkpoint has none)")
    p.add_argument("--eval-samples", type=int, help="at most this many --data images (default all)")
    p.add_argument("--latency-runs", type=int, default=50, help="timed host LiteRT runs (0 skips; default 50)")
    p.add_argument("--no-fold-normalization", dest="fold_normalization", action="store_false",
                   help="keep a per-channel mean/std in the metadata instead of building it into the model "
                        "(MediaPipe Tasks then cannot load the model; the TFLite Task Library can)")
    p.add_argument("--cache-dir", help="decoded-image cache (default ~/.cache/mobile-compress/images)")
    p.add_argument("--json", action="store_true", help="print the model card as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    claim_out_dir(args.out, overwrite=args.overwrite, resumable=False,
                  inputs=[args.source, args.checkpoint, args.data, args.labels_file])
    bundle = export_app(AppExportConfig(
        source=args.source, out_dir=args.out, format=args.format, checkpoint=args.checkpoint, name=args.name,
        version=args.version, license=args.license, author=args.author, description=args.description,
        data=args.data, labels_file=args.labels_file, eval_samples=args.eval_samples,
        latency_runs=args.latency_runs, cache_dir=args.cache_dir, fold_normalization=args.fold_normalization,
        progress=not args.quiet))
    if args.json:
        print_json(bundle.card)
    else:
        for key, path in bundle.files.items():
            print(f"{key:9s} {path}")
        acc = bundle.card["accuracy"].get("tflite")
        if acc:
            print(f"top-1 on {acc['samples']} {acc['data']} {acc['split']} images: .tflite "
                  f"{acc['tflite_top1']:.2%}, PyTorch {acc['pytorch_top1']:.2%}")
        lat = bundle.card["latency"].get("host_litert")
        if lat:
            print(f"host LiteRT latency (XNNPACK, 1 thread): median {lat['median_ms']:.3f} ms")
    for warning in (w for w in bundle.card["warnings"] if not w.startswith("parity: ")):
        print_problem("export-app", f"warning: {warning}")
    for problem in bundle.problems:
        print_problem("export-app", problem)
    return 0 if bundle.passed else EXIT_BELOW_BAR
