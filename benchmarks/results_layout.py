"""Where each CIFAR-10 benchmark script keeps its results under one root, so the runner and the summary agree.

The paths mirror the scripts' own defaults (``--out`` = ``<root>/<script name>``); the runner
passes them explicitly, the stage measurement and the summary only read them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# step name -> (folder under the root, results file inside it)
RESULTS: dict[str, tuple[str, str]] = {
    "train": ("train_cifar10", "results.json"),
    "convert": ("convert_zoo", "convert_zoo.json"),
    "quantize": ("quantize_cifar10", "results.json"),
    "prune": ("prune_cifar10", "results.json"),
    "distill": ("distill_cifar10", "results.json"),
    "stages": ("stages_cifar10", "results.json"),
}


def step_dir(root: Path, step: str) -> Path:
    return Path(root) / RESULTS[step][0]


def results_path(root: Path, step: str) -> Path:
    folder, name = RESULTS[step]
    return Path(root) / folder / name


def load(root: Path, step: str) -> Any | None:
    """The step's results, or None when it has not written any (or wrote a file cut short by a kill)."""
    path = results_path(root, step)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def quantize_rows(data: Any) -> list[dict]:
    """quantize_cifar10 writes ``{"environment", "args", "rows"}``."""
    return list(data.get("rows", [])) if isinstance(data, dict) else []


def convert_rows(data: Any) -> list[dict]:
    """convert_zoo writes ``{"environment", "rows"}``."""
    return list(data.get("rows", [])) if isinstance(data, dict) else []


def distill_runs(data: Any) -> list[dict]:
    """distill_cifar10 writes ``{"student/variant": {...}}``; only finished runs count."""
    return [r for r in (data or {}).values() if isinstance(r, dict) and r.get("done")]


def distill_checkpoint(root: Path, student: str, variant: str) -> Path:
    """distill_cifar10 trains each run in ``<out>/<student>/<variant>``; the checkpoint is its ``best``."""
    return step_dir(root, "distill") / student / variant / "best"


def quantize_report(root: Path, model: str, method: str) -> Path:
    """quantize_cifar10 converts each quantized checkpoint into ``<out>/<model>/<method>/int8``."""
    return step_dir(root, "quantize") / model / method / "int8" / "report.json"


def prune_checkpoint(root: Path, model: str) -> Path:
    """prune_cifar10 saves our pruned, fine-tuned model as a checkpoint in ``<out>/<model>/ours``."""
    return step_dir(root, "prune") / model / "ours"


def prune_tflite(root: Path, model: str, method: str) -> Path:
    """prune_cifar10 keeps the fp32 .tflite of each method as ``<out>/<model>/<method>.tflite``."""
    return step_dir(root, "prune") / model / f"{method}.tflite"
