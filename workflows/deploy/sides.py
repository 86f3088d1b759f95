"""The two models a deploy compares, measured the same way.

Before: the recipe's starting model (the teacher a ``distill`` starts from, the ``input`` of a
first compression stage, or what the first ``train`` stage trains), converted here to fp32
TFLite, so both sides are .tflite files run by the same interpreter. After: the .tflite of the
recipe's last ``convert`` or ``export-app`` stage (the app bundle's model.tflite; from a
conversion, the most compact flavour that was written). Both are scored on the same held-out
images with their own checkpoint's preprocessing, so their top-1 can be compared.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from mobile_compress.errors import UserError
from workflows.recipes.recipe import Recipe
from workflows.recipes.stages import REGISTRY, TFLITE, Ref, StageResult

#: From a conversion stage, the artifact a phone would ship, most compact first.
PREFERRED_FORMATS = ("int8", "dynamic", "fp16", "fp32")
BUNDLE_CARD = "model_card.json"  # written by export-app beside model.tflite


@dataclass
class Side:
    """One side of the comparison: where its model came from and what it measured on the host."""

    role: str  # "before" or "after"
    checkpoint: str
    tflite: str | None
    format: str
    origin: str  # how the .tflite was made, in words
    arch: str | None = None
    params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None
    top1: float | None = None  # percent, of the .tflite on the held-out images
    eval_images: int | None = None
    eval_split: str | None = None
    error: str | None = None  # why this side has no .tflite or no accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def original_source(recipe: Recipe) -> Ref | str:
    """The model the recipe starts from: a distill's teacher, a first stage's input, or the first stage's output."""
    first = recipe.stages[0]
    if first.kind == "distill":
        return first.options.teacher
    if first.input is not None:
        return first.input
    return Ref(first.index)


def deployable_stage(recipe: Recipe) -> int:
    """Index of the last stage producing .tflite files; a UserError (before any work) when there is none."""
    found = [s.index for s in recipe.stages if REGISTRY[s.kind].produces == TFLITE]
    if not found:
        raise UserError(f"{recipe.path.name}: stages: no stage produces a .tflite to deploy "
                        f"(stages: {', '.join(s.kind for s in recipe.stages)})",
                        hint="add '- export-app: {format: int8}' (the app bundle) or '- convert: {formats: [int8]}' "
                             "after the last compression stage")
    return found[-1]


def final_tflite(result: StageResult, label: str) -> tuple[Path, str]:
    """The .tflite the deploy ships from a finished convert/export-app stage, and its format."""
    artifacts = {fmt: a for fmt, a in (result.metrics.get("artifacts") or {}).items()
                 if a.get("path") and str(a["path"]).endswith(".tflite") and Path(a["path"]).is_file()}
    for fmt in PREFERRED_FORMATS:
        if fmt in artifacts:
            return Path(artifacts[fmt]["path"]), fmt
    errors = "; ".join(f"{fmt}: {a.get('error')}" for fmt, a in (result.metrics.get("artifacts") or {}).items()
                       if a.get("error"))
    raise UserError(f"stage {label} wrote no .tflite file to deploy" + (f" ({errors})" if errors else ""),
                    hint="look at that stage's report.json, change its formats, then run again with --resume")


def bundle_input_normalization(tflite: Path) -> dict[str, Any] | None:
    """What an app bundle's model takes (its card says when the normalisation was folded in), else None."""
    card = tflite.parent / BUNDLE_CARD
    if not card.is_file():
        return None
    norm = json.loads(card.read_text(encoding="utf-8")).get("input", {}).get("normalization") or {}
    return {"mean": norm["mean"], "std": norm["std"]} if "mean" in norm and "std" in norm else None


def convert_original(checkpoint: str, out_dir: Path, data: str | None, cache_dir: str | None, calib_samples: int,
                     parity_samples: int, log: Callable[[str], None]) -> tuple[Path | None, str | None]:
    """The starting model as fp32 TFLite (kept from an earlier run when already there); (path, error)."""
    from converters import ConvertConfig, convert

    report_file = out_dir / "report.json"
    if report_file.is_file():
        done = next((a for a in json.loads(report_file.read_text(encoding="utf-8")).get("artifacts", [])
                     if a.get("format") == "fp32"), None)
        if done and done.get("path") and Path(done["path"]).is_file():
            log(f"deploy: the starting model's fp32 .tflite is already in {out_dir}, kept")
            return Path(done["path"]), None
    log(f"deploy: converting the starting model {checkpoint} to fp32 TFLite (the 'before') -> {out_dir}")
    report = convert(ConvertConfig(source=checkpoint, out_dir=str(out_dir), formats=("fp32",), calib=data,
                                   calib_samples=calib_samples, parity_samples=parity_samples, cache_dir=cache_dir))
    artifact = report.artifact("fp32")
    for problem in artifact.problems:
        log(f"warning: before model: {problem}")
    if artifact.error or not artifact.path:
        return None, f"converting {checkpoint} to fp32 TFLite failed: {artifact.error}"
    return Path(artifact.path), None


def measure(side: Side, data: str | None, eval_samples: int | None, cache_dir: str | None,
            input_normalization: dict[str, Any] | None = None) -> Side:
    """Fill in parameters, MACs, .tflite size and the .tflite's top-1 on the held-out images."""
    from mobile_compress.counting import count_parameters
    from workflows.recipes.stage_metrics import macs_of
    from mobile_compress.training import load_checkpoint

    model, meta = load_checkpoint(side.checkpoint)
    side.arch, side.params, side.macs = meta.arch, count_parameters(model), macs_of(model, meta)
    if side.tflite is None:
        return side
    side.size_bytes = Path(side.tflite).stat().st_size
    data = data or (meta.extra.get("data") if isinstance(meta.extra.get("data"), str) else None)
    if data is None:
        side.error = "no data to score the .tflite on (the recipe names none, nor does the checkpoint)"
        return side
    side.top1, side.eval_images, side.eval_split = tflite_top1(Path(side.tflite), meta, data, eval_samples, cache_dir,
                                                               input_normalization)
    return side


def tflite_top1(tflite: Path, meta: Any, data: str, limit: int | None, cache_dir: str | None,
                input_normalization: dict[str, Any] | None) -> tuple[float, int, str]:
    """Top-1 (percent) of the .tflite in LiteRT on evenly spread held-out images, preprocessed as in training."""
    import numpy as np

    from converters.app_bundle import renormalize
    from converters.app_bundle import read_io
    from converters.app_bundle import eval_images
    from converters.parity import run_tflite
    from mobile_compress.data import Normalization

    norm = Normalization.from_dict(meta.normalization)
    size = meta.input_size if isinstance(meta.input_size, int) else meta.input_size[0]
    images, labels, split = eval_images(data, size, norm, limit, cache_dir)
    target = Normalization.from_dict(input_normalization) if input_normalization else norm
    shape = read_io(tflite).input.shape
    layout = "nchw" if len(shape) == 4 and shape[1] == 3 and shape[3] != 3 else "nhwc"
    predicted = run_tflite(tflite, renormalize(images, norm, target), layout).argmax(1)
    return 100.0 * float(np.mean(predicted == labels)), int(len(labels)), split
