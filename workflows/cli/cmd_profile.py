"""`mobile-compress profile`: latency, memory, power and thermals of .tflite models on phones (or the host).

    mobile-compress profile model.tflite --device auto --delegates cpu,gpu,nnapi --threads 1,4 --out runs/prof
    mobile-compress profile model.tflite --host --threads 1,2 --out runs/prof     # no phone: this computer
    mobile-compress profile --from-log benchmark_output.txt                       # a log you captured yourself
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from android_harness.delegates import check_accelerator, check_options, expand
from android_harness.session import RunnerOptions
from workflows.cli.common import TRANSPORT_HELP, add_overwrite_option
from mobile_compress.run_folder import claim_out_dir
from mobile_compress.errors import UserError
from mobile_compress.report import environment
from profiler.api import profile
from profiler.device_job import ProfileSettings
from profiler.from_log import report_log
from profiler.reports import format_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="profile .tflite models on Android phones over ADB (or on the host)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", type=Path, help=".tflite files")
    p.add_argument("--from-log", type=Path, help="report on a benchmark_model log captured by hand, then stop")
    p.add_argument("--out", type=Path, help="output folder: profile.json, .csv, .html and the raw device files")
    p.add_argument("--resume", action="store_true",
                   help="continue the profile in --out: runs recorded as ok for the very same model files are kept")
    add_overwrite_option(p)
    where = p.add_argument_group("where")
    where.add_argument("--device", action="append", default=[],
                       help="device serial (repeatable, or comma-separated); 'auto' = every attached device")
    where.add_argument("--host", action="store_true",
                       help="no phone: time the models with this computer's LiteRT interpreter (labelled host)")
    where.add_argument("--transport", help=TRANSPORT_HELP)
    where.add_argument("--benchmark-model", help="benchmark_model binary for the device's ABI "
                       "(default: $MOBILE_COMPRESS_BENCHMARK_MODEL, or the cache)")
    add_delegate_options(p)
    add_measurement_options(p)
    p.add_argument("--json", action="store_true", help="print the records as JSON instead of a table")
    p.set_defaults(run=run)


def add_delegate_options(p: argparse.ArgumentParser) -> None:
    """Which delegates and how (shared with `deploy`)."""
    what = p.add_argument_group("delegates")
    what.add_argument("--delegates", default="cpu", help="comma-separated: cpu, gpu, nnapi, external (default cpu)")
    what.add_argument("--threads", default="1", help="cpu thread counts, comma-separated (default 1)")
    what.add_argument("--xnnpack", choices=["on", "off", "both"], default="on", help="cpu: XNNPACK (default on)")
    what.add_argument("--big-cores", action="store_true", help="cpu: pin to the cores with the highest max frequency")
    what.add_argument("--gpu-precision-loss", action="store_true", help="gpu: allow fp16 arithmetic")
    what.add_argument("--nnapi-accelerator", help="nnapi: accelerator name (e.g. qti-dsp)")
    what.add_argument("--nnapi-fp16", action="store_true", help="nnapi: allow fp16 relaxation")
    what.add_argument("--external-delegate", help="external: delegate .so (host file to push, or a device path)")
    what.add_argument("--external-option", action="append", default=[], metavar="KEY=VALUE",
                      help="external: delegate option (repeatable); letters, digits and _ in KEY, "
                           "and _ . , / + - also in VALUE")


def add_measurement_options(p: argparse.ArgumentParser) -> None:
    """How each benchmark is run and sampled (shared with `deploy`)."""
    how = p.add_argument_group("measurement")
    how.add_argument("--runs", type=int, default=50, help="timed runs (benchmark_model --num_runs)")
    how.add_argument("--warmup", type=int, default=1, help="warm-up runs")
    how.add_argument("--min-secs", type=float, help="keep running at least this long")
    how.add_argument("--op-profiling", action="store_true", help="per-operator timings")
    how.add_argument("--peak-memory", action="store_true",
                     help="also let benchmark_model monitor its peak memory (a thread that can slow the runs)")
    how.add_argument("--sample-interval", type=float, default=0.1, help="memory/power sampling interval, s")
    how.add_argument("--baseline", type=int, default=2, help="idle power baseline before each run, whole seconds")
    how.add_argument("--cooldown", type=int, default=0, help="wait this many seconds before each run")
    how.add_argument("--timeout", type=float, default=600, help="kill a benchmark after this many seconds")
    how.add_argument("--unplug", action="store_true",
                     help="`dumpsys battery unplug` during the job (and `reset` after) so power can be measured")
    how.add_argument("--allow-charging", action="store_true", help="report power even while charging")


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"{option} takes comma-separated whole numbers, got {text!r}", hint=f"for example {option} 1,2,4")


def _options(pairs: list[str]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--external-option {pair!r} is not KEY=VALUE", hint="for example --external-option backend=htp")
        out.append((key, value))
    check_options(out)  # also when no external delegate runs: a bad option is a mistake either way
    return out


def settings_from(args: argparse.Namespace) -> ProfileSettings:
    for model in args.models:
        if not model.is_file():
            raise UserError(f"model file {model} does not exist", hint="give the path of a .tflite file")
    return profile_settings(args, list(args.models))


def profile_settings(args: argparse.Namespace, models: list[Path]) -> ProfileSettings:
    """ProfileSettings from the options of ``add_delegate_options`` and ``add_measurement_options``."""
    xnnpack = {"on": [True], "off": [False], "both": [True, False]}[args.xnnpack]
    check_accelerator(args.nnapi_accelerator)
    delegates = expand(args.delegates.split(","), threads=_ints(args.threads, "--threads"), xnnpack=xnnpack,
                       big_cores=args.big_cores, precision_loss=args.gpu_precision_loss,
                       accelerator=args.nnapi_accelerator, fp16=args.nnapi_fp16, library=args.external_delegate,
                       options=_options(args.external_option))
    if args.runs < 1 or args.warmup < 0:
        raise UserError("--runs must be 1 or more and --warmup 0 or more", hint="for example --runs 50 --warmup 1")
    runner = RunnerOptions(interval_s=args.sample_interval, baseline_s=args.baseline, cooldown_s=args.cooldown,
                           timeout_s=args.timeout)
    return ProfileSettings(models=models, delegates=delegates, runner=runner,
                           benchmark_model=args.benchmark_model, num_runs=args.runs, warmup_runs=args.warmup,
                           min_secs=args.min_secs, op_profiling=args.op_profiling, peak_memory=args.peak_memory,
                           unplug=args.unplug,
                           allow_charging=args.allow_charging)


def run(args: argparse.Namespace) -> int:
    if args.from_log:
        if args.models:
            raise UserError(f"--from-log reads one log; it takes no model files (got {', '.join(map(str, args.models))})",
                            hint="mobile-compress profile --from-log FILE")
        print(report_log(args.from_log, as_json=args.json))
        return 0
    if not args.models:
        raise UserError("no model given", hint="mobile-compress profile MODEL.tflite --device auto --out DIR "
                                               "(or --from-log FILE)")
    if not args.out:
        raise UserError("--out is required", hint="name a folder for profile.json/.csv/.html, e.g. --out runs/profile")
    settings = settings_from(args)
    claim_out_dir(args.out, resume=args.resume, overwrite=args.overwrite, inputs=args.models)
    env = environment().to_dict()
    if args.host:
        outputs = profile(settings, args.out, host=True, environment=env)
    else:
        from profiler.devices import open_device, resolve_serials

        serials = resolve_serials(args.device or ["auto"], args.transport)
        outputs = profile(settings, args.out, serials=serials, environment=env,
                          opener=lambda serial: open_device(serial, args.transport))
    if args.json:
        print(json.dumps([r.to_dict() for r in outputs.records], indent=2, default=str))
    else:
        print(format_runs(outputs.records))
        print(f"\nwrote {outputs.json}, {outputs.csv}, {outputs.html}")
    failed = [r for r in outputs.records if r.status in ("failed", "error")]
    return 1 if failed and len(failed) == len(outputs.records) else 0
