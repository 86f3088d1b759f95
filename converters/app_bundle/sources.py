"""Which .tflite goes into the bundle, and which checkpoint describes it.

SRC is a checkpoint (converted here), a ``mobile-compress convert`` output directory
(its report.json names the checkpoint and holds the parity figures), or a bare .tflite
(then --checkpoint is required: labels, normalisation and metrics come from it).
``conversion_mismatch`` says whether a conversion output holds the very model an export
of the checkpoint would convert, so that a recipe bundles it instead of converting again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobile_compress.errors import UserError

CONVERT_REPORT = "report.json"  # converters.api.REPORT_FILE; named here to keep heavy imports out
CHECKPOINT_META = "checkpoint.json"
# What export_app converts to (every format, int8 included: int8 compute inside): one NHWC image of the
# checkpoint's size in, scores out, both float32.
BUNDLE_DTYPE = "float32"


@dataclass
class BundleSource:
    """``tflite``: an existing model to wrap (None: convert ``checkpoint``). ``artifact``: its
    entry in a conversion report (parity figures), when there is one."""

    checkpoint: Path
    tflite: Path | None = None
    report_path: Path | None = None
    artifact: dict[str, Any] | None = None


def resolve(src: str, fmt: str, checkpoint: str | None) -> BundleSource:
    path = Path(src).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist",
                        hint="pass a checkpoint directory, a `mobile-compress convert` output directory or a .tflite")
    if path.is_dir() and (path / CHECKPOINT_META).is_file():
        if checkpoint is not None:
            raise UserError(f"{path} is itself a checkpoint; --checkpoint {checkpoint} is not needed",
                            hint="leave out --checkpoint when SRC is a checkpoint")
        return BundleSource(checkpoint=path)
    if path.is_dir() and (path / CONVERT_REPORT).is_file():
        return _from_conversion(path, fmt, checkpoint)
    if path.is_file() and path.suffix.lower() == ".tflite":
        report = path.parent / CONVERT_REPORT
        found = _from_conversion(path.parent, None, checkpoint, tflite=path) if report.is_file() else None
        if found is not None:
            return found
        return BundleSource(checkpoint=_need_checkpoint(path, checkpoint), tflite=path)
    if path.is_dir():
        raise UserError(f"{path} holds neither {CHECKPOINT_META} (a checkpoint) nor {CONVERT_REPORT} "
                        "(a conversion output)",
                        hint="pass a checkpoint directory, a `mobile-compress convert --out` directory or a .tflite")
    raise UserError(f"{path} is not a checkpoint, a conversion output directory or a .tflite file",
                    hint="pass a checkpoint directory, a `mobile-compress convert --out` directory or a .tflite")


def _from_conversion(directory: Path, fmt: str | None, checkpoint: str | None,
                     tflite: Path | None = None) -> BundleSource:
    report_path = directory / CONVERT_REPORT
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {report_path}: {err}",
                        hint="re-run `mobile-compress convert`, or pass the .tflite and --checkpoint") from None
    artifacts = report.get("artifacts") if isinstance(report, dict) else None
    if not isinstance(artifacts, list):
        raise UserError(f"{report_path}: field 'artifacts' is missing", hint="re-run `mobile-compress convert`")
    if tflite is None:
        artifact = next((a for a in artifacts if isinstance(a, dict) and a.get("format") == fmt), None)
        available = [a.get("format") for a in artifacts if isinstance(a, dict) and a.get("path")
                     and str(a.get("path")).endswith(".tflite")]
        if artifact is None or not artifact.get("path"):
            raise UserError(f"{directory} has no {fmt} TFLite model ({report_path.name} lists "
                            f"{', '.join(map(str, available)) or 'none'})",
                            hint=f"pass --format {available[0]}" if available else
                            f"convert with `mobile-compress convert CHECKPOINT --out {directory} --formats {fmt}`")
        tflite = directory / Path(artifact["path"]).name
    else:
        artifact = next((a for a in artifacts if isinstance(a, dict) and a.get("path")
                         and Path(a["path"]).name == tflite.name), None)
    if not tflite.is_file():
        raise UserError(f"{tflite} is missing (listed in {report_path})",
                        hint="re-run `mobile-compress convert`, or pass the .tflite and --checkpoint")
    if checkpoint is None and report.get("source_kind") == "checkpoint" and report.get("source"):
        recorded = Path(report["source"])
        if not (recorded / CHECKPOINT_META).is_file():
            raise UserError(f"{report_path} was converted from {recorded}, which is gone",
                            hint="pass --checkpoint DIR (the checkpoint the model was converted from)")
        checkpoint = str(recorded)
    return BundleSource(checkpoint=_need_checkpoint(tflite, checkpoint), tflite=tflite, report_path=report_path,
                        artifact=artifact)


def _need_checkpoint(tflite: Path, checkpoint: str | None) -> Path:
    if checkpoint is None:
        raise UserError(f"{tflite} has no checkpoint to take labels, normalisation and metrics from",
                        hint="pass --checkpoint DIR (the checkpoint the model was converted from)")
    path = Path(checkpoint).expanduser()
    if path.is_file() and path.name == CHECKPOINT_META:
        path = path.parent
    if not (path / CHECKPOINT_META).is_file():
        raise UserError(f"--checkpoint {path} is not a checkpoint (no {CHECKPOINT_META} in it)",
                        hint="pass the checkpoint directory the model was converted from")
    return path


def converts_folded(norm: Any, quantized: bool, fold_normalization: bool) -> bool:
    """Whether an export that converts a checkpoint builds its normalisation ``norm`` into the model: asked for,
    needed (MediaPipe takes one mean/std for all channels) and possible (a quantized checkpoint converts through
    its own int8 path, with its trained ranges)."""
    from converters.app_bundle.fold import needs_folding

    return fold_normalization and needs_folding(norm) and not quantized


def conversion_mismatch(directory: str | Path, fmt: str, checkpoint: str | Path,
                        fold_normalization: bool = True) -> str | None:
    """Why the ``fmt`` model in the conversion output ``directory`` is not the one an export of ``checkpoint``
    would convert (None: it is, so the bundle can take it, adding only metadata)."""
    from converters.app_bundle.io_spec import read_io
    from mobile_compress.data import Normalization
    from mobile_compress.quantization import is_quantized
    from mobile_compress.training import read_meta

    directory, checkpoint = Path(directory), Path(checkpoint)
    try:
        found = _from_conversion(directory, fmt, str(checkpoint))
    except UserError as err:
        return err.message
    report = json.loads(found.report_path.read_text())
    source = report.get("source")
    if report.get("source_kind") != "checkpoint" or not source or Path(source).resolve() != checkpoint.resolve():
        return f"{directory} was converted from {source}, not from {checkpoint}"
    if found.artifact is None or found.artifact.get("error"):
        return f"{found.report_path} has no working {fmt} entry"
    meta = read_meta(checkpoint)
    h, w = meta.input_size if isinstance(meta.input_size, (tuple, list)) else (meta.input_size, meta.input_size)
    io = read_io(found.tflite)
    wanted = ([1, h, w, 3], BUNDLE_DTYPE, BUNDLE_DTYPE)
    if (list(io.input.shape), io.input.dtype, io.output.dtype) != wanted:
        return (f"its {fmt} model takes {io.input.dtype} {io.input.shape} and gives {io.output.dtype}, and the app "
                f"bundle's takes {wanted[1]} {wanted[0]} (NHWC) and gives {wanted[2]}"
                + (" (convert with int8_io: float)" if fmt == "int8" and io.input.dtype != BUNDLE_DTYPE else ""))
    norm = Normalization.from_dict(meta.normalization) if meta.normalization else None
    if norm is not None and converts_folded(norm, is_quantized(meta), fold_normalization):
        return ("the bundle builds the checkpoint's per-channel normalisation into its model "
                "(fold_normalization), and the conversion has none built in")
    return None
