"""`mobile-compress demo`: the main job on its embedded default, no arguments needed.

It deploys an embedded recipe (workflows/demo.py) the way `deploy` deploys any
recipe: on the built-in digits (shipped inside scikit-learn, so it runs offline) a ResNet-56
teacher is trained, distilled into a MobileNetV2 student, pruned, trained for int8 (QAT),
converted to ONNX and TFLite and bundled for an app; then teacher and student are compared.
It measures on the phone when exactly one is attached, otherwise on this computer, and says so.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from workflows.cli.cmd_deploy import report
from workflows.cli.common import TRANSPORT_HELP
from workflows.demo import demo_config
from workflows.deploy.run import run_deploy

#: One PyTorch thread: the demo's models are tiny, and on a busy 2-core machine a 2-thread pool spins against
#: the other processes (MobileNetV2 x0.5 at 16 px trained at 9 img/s with 2 threads, 142 with 1, at load 7.6).
TORCH_THREADS = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole chain on the built-in digits, teacher against compressed student "
                                    "(no arguments needed)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo",
                   help="run directory (default runs/demo); an unfinished demo there is continued")
    p.add_argument("--host", action="store_true", help="measure on this computer even if a phone is attached")
    p.add_argument("--transport", help=TRANSPORT_HELP)
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # tests: one epoch, 8 px, few samples
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        return _demo(args)
    finally:
        torch.set_num_threads(threads)


def _demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out)
    config, choice = demo_config(out, quick=args.quick, host=args.host, transport=args.transport)
    if choice.host:
        print(f"demo: {choice.reason}.\n"
              "demo: PROFILING ON THIS COMPUTER (the host's LiteRT interpreter), NOT ON A PHONE. Attach one phone "
              "with USB debugging on to measure on it.")
    else:
        print(f"demo: {choice.reason}; profiling on it (cpu, gpu, nnapi)")
    if config.resume:
        print(f"demo: {out} holds an earlier demo run; continuing it (finished stages are kept; "
              "use --out DIR for a new one)")
    print(f"demo: teacher -> distilled, pruned, QAT student -> ONNX, TFLite, app bundle, in {out} "
          f"(recipe: {config.recipe}); this takes a few minutes")
    code = report(run_deploy(config))
    minutes, seconds = divmod(time.monotonic() - started, 60)
    print(f"demo finished in {int(minutes)} min {seconds:.0f} s"
          + (" (on the host: the latencies above are this computer's, not a phone's)" if choice.host else ""))
    return code
