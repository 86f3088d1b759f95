"""`mobile-compress deploy`: run a recipe, push the result to the phone, and measure it against the original.

    mobile-compress deploy recipe.yaml --device auto --delegates cpu,gpu,nnapi
    mobile-compress deploy recipe.yaml --device R5CT12345 --out runs/mine --resume   # continue a killed deploy
    mobile-compress deploy recipe.yaml --host                                       # no phone: this computer
    mobile-compress deploy digits_full_chain --host                                 # an example recipe, by name

Before: the recipe's starting model (a distill's teacher, a first stage's input, or what the
first train stage trains) as fp32 TFLite. After: the .tflite of its last export-app or convert
stage (from a conversion, the most compact flavour written). Report: RUN_DIR/deploy/deploy.json,
.csv and .html (accuracy, size, MACs, and latency, memory and power per delegate) and a table.
"""
from __future__ import annotations

import argparse

from workflows.cli.cmd_profile import add_delegate_options, add_measurement_options, profile_settings
from workflows.cli.common import TRANSPORT_HELP, add_overwrite_option
from mobile_compress.errors import UserError
from workflows.deploy.run import DEVICE_DIR, DeployConfig, DeployResult, run_deploy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="run a recipe, push the result to a phone, profile it against the original",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="recipe .yaml file, or the name of an example recipe (`mobile-compress examples` "
                   "lists them; a file of that path wins); it must end in convert or export-app")
    p.add_argument("--out", help="run directory (default: runs/<recipe name>); the report is in OUT/deploy/")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (finished stages and runs are kept)")
    add_overwrite_option(p)
    where = p.add_argument_group("where")
    where.add_argument("--device", default="auto",
                       help="device serial, or 'auto' for the only attached phone (default auto)")
    where.add_argument("--host", action="store_true",
                       help="no phone: profile with this computer's LiteRT interpreter (labelled host)")
    where.add_argument("--transport", help=TRANSPORT_HELP)
    where.add_argument("--benchmark-model", help="benchmark_model binary for the device's ABI "
                       "(default: $MOBILE_COMPRESS_BENCHMARK_MODEL, or the cache)")
    where.add_argument("--device-dir", default=DEVICE_DIR,
                       help=f"where the deployed model is left on the phone, in a folder named after the recipe "
                            f"(default {DEVICE_DIR})")
    add_delegate_options(p)
    add_measurement_options(p)
    p.add_argument("--eval-samples", type=int, default=1000,
                   help="held-out images both .tflite files are scored on (default 1000, evenly spread)")
    p.set_defaults(run=run)


def config_from(args: argparse.Namespace) -> DeployConfig:
    if args.host and args.device != "auto":
        raise UserError(f"--host and --device {args.device} contradict each other",
                        hint="measure on the phone (--device) or on this computer (--host), not both")
    if args.eval_samples < 1:
        raise UserError(f"--eval-samples must be 1 or more, got {args.eval_samples}",
                        hint="for example --eval-samples 500")
    return DeployConfig(recipe=args.recipe, settings=profile_settings(args, []), out_dir=args.out, device=args.device,
                        host=args.host, transport=args.transport, resume=args.resume, overwrite=args.overwrite,
                        eval_samples=args.eval_samples,
                        device_dir=args.device_dir)


def report(result: DeployResult) -> int:
    """Print the table and where everything is; exit 1 when nothing could be measured or the push failed."""
    print(result.table)
    for warning in result.warnings:
        print(f"warning: {warning}")
    files = result.files
    print(f"\nreport: {files.html}\n        {files.json}, {files.csv}")
    runs = len(result.report.records)
    if result.failed_runs:
        print(f"{result.failed_runs} of {runs} profile run(s) did not complete; their reasons are in the report")
    if runs and result.failed_runs == runs:
        return 1
    if result.report.pushed and not result.pushed:
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    return report(run_deploy(config_from(args)))
