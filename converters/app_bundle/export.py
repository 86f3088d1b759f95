"""``export_app``: the steps of an app export, in order, with progress.

resolve SRC -> convert the checkpoint (or take the given .tflite and its parity figures)
-> check the tensors against what MediaPipe Tasks accept -> metadata + labels.txt ->
accuracy on --data and host latency -> model card (JSON, Markdown) -> Kotlin snippet.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from converters.app_bundle import card as card_mod
from converters.app_bundle.fold import UNIT, export_folded
from converters.app_bundle.config import CARD_JSON, CARD_MD, KOTLIN_FILE, LABELS_FILE, MODEL_FILE, AppExportConfig
from converters.app_bundle.io_spec import Preprocessing, check_client_io, preprocessing, read_io
from converters.app_bundle.kotlin import kotlin_snippet
from converters.app_bundle.labels import labels_text, resolve_labels
from converters.progress import Progress
from converters.app_bundle.sources import BundleSource, converts_folded, resolve
from mobile_compress.errors import UserError
from mobile_compress.quantization import is_quantized
from mobile_compress.report import package_versions, write_bytes, write_json, write_text

_PACKAGES = ("mobile-compress", "torch", "onnx2tf", "tensorflow", "ai-edge-litert", "mediapipe")


@dataclass
class AppBundle:
    """What was written: the files, the card, and whether the model met its parity bar."""

    out_dir: Path
    files: dict[str, Path]
    card: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def export_app(config: AppExportConfig) -> AppBundle:
    """Write the bundle for ``config``; UserError for bad input (nothing written then).

    A model below its parity bar is still bundled, and its problems are returned in
    ``AppBundle.problems`` (the CLI exits non-zero on them).
    """
    from mobile_compress.data import Normalization
    from mobile_compress.training import load_checkpoint

    config.validate()
    steps = Progress(6, config.progress)
    source = resolve(config.source, config.format, config.checkpoint)
    steps.line(f"loading checkpoint {source.checkpoint}")
    model, meta = load_checkpoint(source.checkpoint)
    meta_file = source.checkpoint / "checkpoint.json"
    labels = resolve_labels(meta.labels, meta_file, config.labels_file, meta.num_classes)
    if not meta.normalization:
        raise UserError(f"{meta_file} has no 'normalization' (mean/std)",
                        hint="re-save the checkpoint with the mean/std it was trained with")
    if source.tflite is None and not config.data and not isinstance(meta.extra.get("data"), str):
        raise UserError(f"{meta_file} does not say which data the model was trained on, so there are no images to "
                        f"calibrate and check the {config.format} model with",
                        hint="pass --data DATA (an image folder, an .npz file or 'builtin'), preprocessed as in training")
    norm = Normalization.from_dict(meta.normalization)
    # A quantization-aware checkpoint converts through its own int8 path (trained ranges), not through a .pt2.
    quantized = is_quantized(meta)
    fold = source.tflite is None and converts_folded(norm, quantized, config.fold_normalization)
    work = Path(tempfile.mkdtemp(prefix="mobile-compress-export-app-"))
    try:
        tflite, artifact = _tflite(config, source, work, steps, model, meta, norm if fold else None)
        return _bundle(config, source, model, meta, labels, tflite, artifact, steps, norm, UNIT if fold else norm)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tflite(config: AppExportConfig, source: BundleSource, work: Path, steps: Progress, model: Any, meta: Any,
            fold: Any) -> tuple[Path, dict | None]:
    """The .tflite to bundle and its conversion-report entry; ``fold``: the normalisation to build in, or None."""
    if source.tflite is not None:
        steps.line(f"using {source.tflite}" + (f" (parity from {source.report_path})" if source.artifact else ""))
        return source.tflite, source.artifact
    from converters import ConvertConfig, convert

    src, normalization, calib = str(source.checkpoint), None, config.data
    if fold is not None:
        size = meta.input_size if isinstance(meta.input_size, tuple) else (meta.input_size, meta.input_size)
        src, normalization = str(export_folded(model, fold, size, work / "model.pt2")), UNIT
        calib = config.data or meta.extra.get("data")
    steps.line(f"converting {source.checkpoint} to {config.format} TFLite (with parity check"
               f"{'; per-channel normalisation folded into the model' if fold is not None else ''})")
    report = convert(ConvertConfig(
        source=src, out_dir=str(work / "convert"), formats=(config.format,), calib=calib, normalization=normalization,
        int8_io="float", calib_samples=config.calib_samples, parity_samples=config.parity_samples,
        cache_dir=config.cache_dir, progress=config.progress))
    artifact = report.artifact(config.format).to_dict()
    if artifact["error"] or not artifact["path"]:
        raise UserError(f"converting {source.checkpoint} to {config.format} failed: {artifact['error']}",
                        hint="try another --format, or run `mobile-compress convert` to see every flavour's result")
    return Path(artifact["path"]), artifact


def _bundle(config: AppExportConfig, source: BundleSource, model: Any, meta: Any, labels: list[str], tflite: Path,
            artifact: dict | None, steps: Progress, norm: Any, input_norm: Any) -> AppBundle:
    """``norm``: the training normalisation; ``input_norm``: what the .tflite takes (UNIT when folded)."""
    from converters.app_bundle import card_metrics
    from converters.app_bundle.metadata import ModelInfo, write_metadata
    from mobile_compress.counting import model_stats

    io = read_io(tflite)
    check_client_io(io, tflite)
    if io.num_outputs != len(labels):
        raise UserError(f"{tflite} has {io.num_outputs} outputs but {len(labels)} class names were given",
                        hint=f"pass --labels FILE with {io.num_outputs} lines, or the checkpoint this model came from")
    prep = preprocessing(io, list(input_norm.mean), list(input_norm.std))
    name = config.name or f"{meta.arch}-{config.format}"
    info = ModelInfo(
        name=name, version=config.version, author=config.author, license=config.license,
        description=config.description or f"{meta.arch} image classifier ({len(labels)} classes), "
                                          f"{io.height}x{io.width} RGB input, {_flavour(io, artifact)} TFLite.",
        input_description=f"RGB image, {io.height}x{io.width}, {prep.feed}.",
        output_description=f"{_meaning(io)} for the {len(labels)} classes in {LABELS_FILE}.")
    steps.line(f"writing {MODEL_FILE} with metadata and {LABELS_FILE}")
    out_dir = Path(config.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"model": out_dir / MODEL_FILE, "labels": out_dir / LABELS_FILE, "card_json": out_dir / CARD_JSON,
             "card_md": out_dir / CARD_MD, "kotlin": out_dir / KOTLIN_FILE}
    text = labels_text(labels)
    write_bytes(files["model"], write_metadata(tflite.read_bytes(), info, prep, text,
                                               output_is_logits=io.output.dtype == "float32"))
    write_text(files["labels"], text)

    size = (io.height, io.width)
    accuracy = None
    if config.data:
        steps.line(f"measuring top-1 of {MODEL_FILE} on {config.data}")
        accuracy = card_metrics.accuracy(files["model"], model, config.data, io.height, norm, input_norm,
                                    config.eval_samples, config.cache_dir).to_dict()
    else:
        steps.line("no --data: accuracy from the checkpoint only")
    latency = None
    if config.latency_runs:
        steps.line(f"timing {MODEL_FILE} on the host LiteRT interpreter")
        latency = card_metrics.latency(files["model"], config.latency_runs)
    else:
        steps.line("host latency skipped (--latency-runs 0)")
    stats = model_stats(model, (3, *size))
    card = _card(source, meta, labels, info, io, prep, norm, input_norm, artifact, stats, files, accuracy, latency)
    steps.line(f"writing {CARD_JSON}, {CARD_MD} and {KOTLIN_FILE}")
    write_json(files["card_json"], card)
    write_text(files["card_md"], card_mod.render_markdown(card))
    write_text(files["kotlin"], kotlin_snippet(card))
    problems = list(artifact.get("problems") or []) if artifact else []
    return AppBundle(out_dir, files, card, problems)


def _card(source, meta, labels, info, io, prep: Preprocessing, norm, input_norm, artifact, stats, files, accuracy,
          latency) -> dict[str, Any]:
    from mobile_compress.data import eval_resize

    h, w = io.height, io.width
    parity = None
    if artifact and artifact.get("parity"):
        parity = {"format": artifact.get("format"), "passed": artifact.get("passed"), "figures": artifact["parity"],
                  "problems": artifact.get("problems") or []}
    return {
        "name": info.name, "version": info.version, "author": info.author, "license": info.license,
        "description": info.description,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {k: p.name for k, p in files.items()},
        "model": {"format": _flavour(io, artifact), "arch": meta.arch, "options": meta.options,
                  "transforms": [t.get("kind", "?") for t in meta.transforms], "checkpoint": str(source.checkpoint),
                  "num_classes": len(labels), "params": stats.params, "macs": stats.macs,
                  "size_bytes": files["model"].stat().st_size},
        "input": {"name": io.input.name, "shape": io.input.shape, "layout": "NHWC", "dtype": io.input.dtype,
                  "color_space": "RGB", "feed": prep.feed,
                  "normalization": {"mean": list(input_norm.mean), "std": list(input_norm.std),
                                    "pixel_mean": [round(m * 255, 6) for m in input_norm.mean],
                                    "pixel_std": [round(s * 255, 6) for s in input_norm.std],
                                    "metadata_mean": prep.pixel_mean, "metadata_std": prep.pixel_std,
                                    "training": {"mean": list(norm.mean), "std": list(norm.std)},
                                    "folded_into_model": input_norm != norm},
                  "quantization": io.input.quantization,
                  "training_preprocessing": f"shorter side resized to {eval_resize(h)} px, centre crop {h}x{w}"},
        "output": {"name": io.output.name, "shape": io.output.shape, "dtype": io.output.dtype,
                   "quantization": io.output.quantization, "meaning": _meaning(io),
                   "meaning_short": "logits" if io.output.dtype == "float32" else "quantized logits"},
        "labels": labels,
        "accuracy": {"checkpoint": card_mod.checkpoint_metrics(meta.metrics, meta.extra.get("data")),
                     "tflite": accuracy, "parity": parity},
        "latency": {"host_litert": latency},
        "clients": {"mediapipe_image_classifier": prep.mediapipe, "tflite_task_library": True, "litert_interpreter": True},
        "warnings": list(prep.warnings) + ([f"parity: {p}" for p in parity["problems"]] if parity else []),
        "versions": package_versions(_PACKAGES),
    }


def _flavour(io, artifact: dict | None) -> str:
    if artifact and artifact.get("format"):
        fmt = artifact["format"]
        return f"{fmt} ({io.input.dtype} input)" if fmt == "int8" else fmt
    return f"{io.input.dtype} input, {io.output.dtype} output"


def _meaning(io) -> str:
    if io.output.dtype == "float32":
        return "logits (unnormalised scores; softmax gives probabilities)"
    return "quantized logits (dequantize with the output's scale and zero point)"
