"""The demo: the whole chain on the built-in digits, as an embedded recipe deployed like any other.

Teacher (ResNet-56) -> distilled student (MobileNetV2 x0.5, small-input stem) -> pruned to half
its MACs with distillation from itself -> QAT -> ONNX, fp32 and int8 TFLite -> app bundle, then
``deploy`` compares the teacher with the bundled student. The recipe is written into the run
folder (``recipe.yaml``), so ``mobile-compress deploy RUN_DIR/recipe.yaml`` reproduces it and
it can be edited as a starting point. Sized to finish well inside 10 minutes on 2 CPU cores.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import yaml

from android_harness.delegates import expand
from android_harness.session import RunnerOptions
from mobile_compress.errors import UserError
from workflows.deploy.run import DeployConfig, Opener, preflight
from workflows.deploy.device_choice import DeviceChoice, Lister, find_phone
from profiler.device_job import ProfileSettings

RECIPE_FILE = "recipe.yaml"
#: The digits are 8x8 scans. 16 px keeps every stage cheap; at 8 px MobileNetV2's last maps are 1x1, where
#: BatchNorm cannot train on a single image (the QAT export's shape pass does exactly that).
IMAGE_SIZE = 16


def _training(epochs: int, lr: float, quick: bool, batch: int, **extra: Any) -> dict[str, Any]:
    return {"epochs": 1 if quick else epochs, "batch_size": batch, "lr": lr, "label_smoothing": 0.1, "seed": 0,
            **extra}


def demo_recipe(quick: bool = False) -> dict[str, Any]:
    """The embedded recipe; ``quick`` (tests only) keeps every stage but trains each for one epoch.

    Every stage trains without augmentation: the digits are not mirror-symmetric, and the default random
    flips and 4-pixel shifts of a 16-pixel image held the student back (it needed twice the epochs, and
    pruning fine-tuned with them lost 4.7 points). Small batches give the 1,437 training images enough
    steps per epoch.
    """
    few = {"calib_samples": 16, "parity_samples": 32} if quick else {}
    return {
        "name": "demo",
        "data": "builtin",
        "latency": not quick,
        "stages": [
            {"train": {"model": "resnet56", "image_size": IMAGE_SIZE, "augment": False,
                       "training": _training(5, 0.1, quick, 32, warmup_epochs=0 if quick else 0.5)}},
            {"distill": {"teacher": "@train", "student": "mobilenet_v2", "image_size": IMAGE_SIZE, "augment": False,
                         "options": {"width_mult": 0.5, "small_input": True}, "kd": ["logit"], "temperature": 4,
                         "alpha": 0.5, "training": _training(4, 0.05, quick, 16, warmup_epochs=0 if quick else 0.5)}},
            {"prune": {"target": "macs=0.5", "steps": 1, "epochs_per_step": 1 if quick else 2, "augment": False,
                       "distill": {"kd": ["logit"]}, "training": _training(2, 0.05, quick, 16)}},
            {"quantize": {"method": "qat", "calib_images": 64 if quick else 256, "augment": False,
                          "distill": {"kd": ["logit"]},
                          "training": _training(2, 0.005, quick, 32, weight_decay=0.00005)}},
            {"convert": {"formats": ["onnx", "fp32", "int8"], **few}},
            {"export-app": {"format": "int8", "name": "digits-demo",
                            "description": "Handwritten digit classifier (the mobile-compress demo).",
                            **({"eval_samples": 64, "latency_runs": 5, **few} if quick else {})}},
        ],
    }


def write_demo_recipe(run_dir: Path, quick: bool = False) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RECIPE_FILE
    header = ("# The recipe `mobile-compress demo` runs (written by it). Run it again, or edit it, with\n"
              f"#   mobile-compress deploy {path} --device auto      (or --host)\n")
    path.write_text(header + yaml.safe_dump(demo_recipe(quick), sort_keys=False), encoding="utf-8")
    return path


def demo_config(run_dir: Path, quick: bool = False, host: bool = False, transport: str | None = None,
                lister: Lister | None = None, opener: Opener | None = None,
                log: Callable[[str], None] = print) -> tuple[DeployConfig, DeviceChoice]:
    """The deploy of the demo recipe: on the one attached phone (cpu, gpu, nnapi) or else on the host (cpu).

    A phone that cannot be profiled (it will not open, or there is no benchmark_model for its ABI)
    sends the demo to the host too, with the reason, rather than stopping it.
    """
    choice = DeviceChoice(None, "--host was given") if host else find_phone(transport, lister)
    config = DeployConfig(recipe=write_demo_recipe(run_dir, quick), settings=_settings(choice.host, quick),
                          out_dir=run_dir, device=choice.serial or "auto", host=choice.host, host_reason=choice.reason,
                          transport=transport, resume=(run_dir / "state.json").is_file(), eval_samples=None,
                          calib_samples=16 if quick else 100, parity_samples=32 if quick else 100)
    if not choice.host:
        try:
            preflight(config, lister, opener, log)
        except UserError as err:
            choice = DeviceChoice(None, f"the attached phone {choice.serial} cannot be profiled: {err.message}"
                                        + (f" ({err.hint})" if err.hint else ""))
            config = replace(config, settings=_settings(True, quick), device="auto", host=True,
                             host_reason=choice.reason)
    return config, choice


def _settings(host: bool, quick: bool) -> ProfileSettings:
    delegates = ["cpu"] if host else ["cpu", "gpu", "nnapi"]
    return ProfileSettings(models=[], delegates=expand(delegates, threads=[1]), num_runs=5 if quick else 50,
                           warmup_runs=1, runner=RunnerOptions(baseline_s=0 if quick else 2))
