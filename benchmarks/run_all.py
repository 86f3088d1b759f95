"""The whole CIFAR-10 comparison in one command: every benchmark script in turn, then one summary.

    nice -n 19 python benchmarks/run_all.py --data cifar10.tar.gz [--budget-minutes 600]
    python benchmarks/run_all.py --summary-only            # rebuild the BENCHMARKS.md section only

Steps, in order (each is the script of that name, run as its own process with its results
under --root, so a crash or the memory of one step cannot take the others down):

  train     train_cifar10.py     the ResNet-56 teacher and the MobileNetV2 student
  convert   convert_zoo.py       every zoo model in every format, LiteRT and ONNX Runtime latency
  quantize  quantize_cifar10.py  fp32 / PTQ int8 / QAT int8 .tflite accuracy, torch.ao PTQ as peer
  prune     prune_cifar10.py     ours against Torch-Pruning at 2x fewer MACs, .tflite latency
  distill   distill_cifar10.py   each KD loss against no KD, same budget
  stages    stages_cifar10.py    every stage's artifact measured the same way side by side

A step whose results are already complete is skipped, so rerunning the command resumes
where a killed run stopped. Inside a step, train_cifar10, prune_cifar10 (model by model) and
distill_cifar10 (run by run) keep what they finished; quantize_cifar10 starts its models
again (its --resume needs a saved training state for every model, so it is not passed). A step that
fails is recorded with its reason in --root/run_all/state.json and the next one runs.
Each step's output is shown as it runs and kept in --root/run_all/logs/STEP.log.
--budget-minutes is shared out over the time caps the scripts have (see BUDGET_SHARES);
prune's fine-tune and convert_zoo have none: size them with --extra.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import results_layout as layout  # noqa: E402
from _common import CACHE, update_section  # noqa: E402

SECTION = "run_all"
# Share of --budget-minutes given to the scripts' time caps (convert_zoo and stages take
# what they take: conversion and timing, no training).
BUDGET_SHARES = {"train": 0.30, "quantize_train": 0.05, "quantize_qat": 0.10, "prune_train": 0.05, "distill": 0.40}
DISTILL_DEFAULT_MINUTES = 240  # distill_cifar10.py requires a budget; this one when --budget-minutes is not given


@dataclass(frozen=True)
class Settings:
    data: str
    root: Path
    budget_minutes: float | None = None
    test_images: int | None = None
    extra: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class Step:
    """A script to run, the arguments it gets, and how to tell that its results are complete."""

    name: str
    script: str
    arguments: Callable[[Settings], list[str]]
    complete: Callable[[Any], bool]
    reads: tuple[str, ...] = ()  # steps whose results it measures: newer ones make it stale


class StepFailed(Exception):
    pass


# --- what each step is asked to do, and when its results are complete -------------------------

def _budget(s: Settings, share: str, flag: str, parts: int = 1) -> list[str]:
    return [] if s.budget_minutes is None else [flag, f"{s.budget_minutes * BUDGET_SHARES[share] / parts:.1f}"]


def _out(s: Settings, step: str) -> list[str]:
    return ["--out", str(layout.step_dir(s.root, step))]


def _checkpoints(s: Settings) -> str:
    return str(layout.step_dir(s.root, "train"))


def _train_complete(data: Any) -> bool:
    from train_cifar10 import DEFAULT_MODELS

    return isinstance(data, list) and set(DEFAULT_MODELS) <= {r.get("model") for r in data}


def _quantize_complete(data: Any) -> bool:
    asked = str((data or {}).get("args", {}).get("models", "")).split(",")
    return bool(asked[0]) and {m.strip() for m in asked} <= {r.get("model") for r in layout.quantize_rows(data)}


def _prune_complete(data: Any) -> bool:
    from prune_cifar10 import MODELS

    return isinstance(data, list) and set(MODELS) <= {r.get("model") for r in data}


def _distill_complete(data: Any) -> bool:
    from distill_cifar10 import STUDENTS, VARIANTS

    done = {(r.get("student"), r.get("variant")) for r in layout.distill_runs(data)}
    return {(s, v) for s in STUDENTS for v in VARIANTS} <= done


def _test_images(s: Settings) -> list[str]:
    return ["--test-images", str(s.test_images)] if s.test_images else []


def _stages_args(s: Settings) -> list[str]:
    return ["--root", str(s.root), "--data", s.data, *_test_images(s)]


STEPS = (
    Step("train", "train_cifar10.py",
         lambda s: ["--data", s.data, *_out(s, "train"), *_budget(s, "train", "--budget-minutes")], _train_complete),
    Step("convert", "convert_zoo.py", lambda s: _out(s, "convert"), lambda d: bool(layout.convert_rows(d))),
    Step("quantize", "quantize_cifar10.py",
         lambda s: ["--data", s.data, *_out(s, "quantize"), "--checkpoints", _checkpoints(s),
                    *_budget(s, "quantize_train", "--train-minutes", 2), *_budget(s, "quantize_qat", "--qat-minutes", 3)]
         + _test_images(s), _quantize_complete),
    Step("prune", "prune_cifar10.py",
         lambda s: ["--data", s.data, *_out(s, "prune"), "--checkpoints", _checkpoints(s),
                    *_budget(s, "prune_train", "--shufflenet-minutes")]
         + _test_images(s), _prune_complete),
    Step("distill", "distill_cifar10.py",
         lambda s: ["--data", s.data, *_out(s, "distill"), "--teacher", str(Path(_checkpoints(s)) / "resnet56" / "best"),
                    *(_budget(s, "distill", "--budget-minutes") or ["--budget-minutes", str(DISTILL_DEFAULT_MINUTES)])],
         _distill_complete),
    Step("stages", "stages_cifar10.py", _stages_args, lambda d: bool((d or {}).get("rows")),
         reads=("train", "quantize", "prune", "distill")),
)
STEP_NAMES = tuple(s.name for s in STEPS)


def is_done(step: Step, root: Path) -> bool:
    """Its results are complete, and no step it measures has written newer results since."""
    data = layout.load(root, step.name)
    if data is None or not step.complete(data):
        return False
    mine = layout.results_path(root, step.name).stat().st_mtime
    return all(not layout.results_path(root, r).is_file() or layout.results_path(root, r).stat().st_mtime <= mine
               for r in step.reads)


# --- running -----------------------------------------------------------------------------------

def run_script(step: Step, argv: list[str], log_file: Path, echo: Callable[[str], None] = print) -> None:
    """The script as a child process; its output is shown and kept. A non-zero exit raises StepFailed."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-u", str(HERE / step.script), *argv]
    last = ""
    with log_file.open("w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                     text=True, bufsize=1) as child:
        log.write("$ " + shlex.join(command) + "\n")
        for line in child.stdout:
            log.write(line)
            echo(f"  {step.name} | {line.rstrip()}")
            if line.strip():
                last = line.strip()
        code = child.wait()
    if code != 0:
        raise StepFailed(f"exit status {code}: {last[:200]} (log: {log_file})")


def run_steps(steps: Iterable[Step], settings: Settings, *, only: set[str] | None = None,
              force: set[str] = frozenset(), runner: Callable[[Step, list[str], Path], None] | None = None,
              echo: Callable[[str], None] = print) -> dict[str, dict]:
    """Run every chosen step that is not done; record each outcome in state.json as it happens."""
    runner = runner or (lambda step, argv, log_file: run_script(step, argv, log_file, echo))
    state_file = settings.root / "run_all" / "state.json"
    state = read_state(settings.root)
    chosen = [s for s in steps if not only or s.name in only]
    for i, step in enumerate(chosen, 1):
        prefix = f"[{i}/{len(chosen)}] {step.name}"
        if step.name not in force and is_done(step, settings.root):
            echo(f"{prefix}: results complete in {layout.results_path(settings.root, step.name)}, skipped")
            state[step.name] = {**state.get(step.name, {}), "status": "results complete, skipped"}
            state[step.name].pop("error", None)
            continue
        argv = step.arguments(settings) + list((settings.extra or {}).get(step.name, []))
        echo(f"{prefix}: python benchmarks/{step.script} {shlex.join(argv)}")
        start = time.monotonic()
        record: dict[str, Any] = {"argv": argv, "log": str(settings.root / "run_all" / "logs" / f"{step.name}.log")}
        try:
            runner(step, argv, Path(record["log"]))
            record["status"] = "ok" if is_done(step, settings.root) else "finished, results incomplete"
        except Exception as err:  # noqa: BLE001 - one step's failure is recorded, the next one runs
            record.update(status="failed", error=str(err) if isinstance(err, StepFailed) else
                          f"{type(err).__name__}: {err}")
        record["minutes"] = round((time.monotonic() - start) / 60, 2)
        state[step.name] = record
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=2))
        echo(f"{prefix}: {record['status']}" + (f" ({record['error']})" if "error" in record else "")
             + f" after {record['minutes']:.1f} min")
    return state


def read_state(root: Path) -> dict[str, dict]:
    try:
        return json.loads((root / "run_all" / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_summary(root: Path, state: dict, command: str | None, write: bool, echo: Callable[[str], None] = print) -> str:
    from mobile_compress.report import environment
    from summary_cifar10 import render

    env = environment(("mobile-compress", "torch", "onnx2tf", "tensorflow", "ai-edge-litert", "onnxruntime"))
    complete = {s.name: s.complete(data) for s in STEPS if (data := layout.load(root, s.name)) is not None}
    body = render(root, state, command, env.markdown(), complete=complete)
    echo(body)
    if write:
        update_section(SECTION, body)
        echo("BENCHMARKS.md updated (section run_all)")
    return body


def _names(text: str | None) -> set[str]:
    names = {n.strip() for n in (text or "").split(",") if n.strip()}
    unknown = names - set(STEP_NAMES)
    if unknown:
        raise SystemExit(f"unknown step {', '.join(sorted(unknown))}; the steps are {', '.join(STEP_NAMES)}")
    return names


def _extra(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        step, sep, args = item.partition("=")
        if not sep:
            raise SystemExit(f"--extra {item!r}: write it as STEP='--flag value ...'")
        _names(step)
        out.setdefault(step, []).extend(shlex.split(args))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(CACHE / "datasets" / "cifar10"), help="cifar10.tar.gz or its folder")
    ap.add_argument("--root", default=str(CACHE / "benchmarks"), help="results of every step (outside the repo)")
    ap.add_argument("--budget-minutes", type=float, help="wall-clock budget shared over the scripts' time caps")
    ap.add_argument("--test-images", type=int, help="test images for quantize, prune and stages (default: all)")
    ap.add_argument("--only", help=f"comma-separated steps to consider ({', '.join(STEP_NAMES)})")
    ap.add_argument("--force", help="comma-separated steps to run even when their results are complete")
    ap.add_argument("--extra", action="append", default=[], metavar="STEP=ARGS",
                    help="more arguments for one step's script, e.g. prune='--epochs 1 --train-images 5000'")
    ap.add_argument("--summary-only", action="store_true", help="run nothing; rebuild the summary from the results")
    ap.add_argument("--no-write", action="store_true", help="print the summary without updating BENCHMARKS.md")
    args = ap.parse_args(argv)
    root = Path(args.root).expanduser().resolve()
    command = "python benchmarks/run_all.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.summary_only:
        state = read_state(root)
        write_summary(root, state, state.get("_command"), not args.no_write)  # the command that made the results
        return 0
    settings = Settings(args.data, root, args.budget_minutes, args.test_images, _extra(args.extra))
    state = run_steps(STEPS, settings, only=_names(args.only) or None, force=_names(args.force))
    state["_command"] = command.strip()
    (root / "run_all" / "state.json").write_text(json.dumps(state, indent=2))
    write_summary(root, state, command.strip(), not args.no_write)
    return 1 if any(isinstance(r, dict) and r.get("status") == "failed" for r in state.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
