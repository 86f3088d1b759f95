"""What a conversion is asked to do (``ConvertConfig``) and the parity bars it must meet.

Kept free of heavy imports so the CLI can validate a request before torch or
TensorFlow load.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mobile_compress.errors import UserError

# Artifact names, in the order they are produced and reported.
FORMATS = ("onnx", "fp32", "fp16", "dynamic", "int8")
TFLITE_FORMATS = ("fp32", "fp16", "dynamic", "int8")
LAYOUTS = ("nhwc", "nchw")
INT8_IO = ("int8", "uint8", "float")
INT8_RANGES = ("auto", "observers", "onnx2tf")  # see ConvertConfig.int8_ranges
DEFAULT_OPSET = 18  # the lowest opset torch 2.13's dynamo exporter writes


@dataclass(frozen=True)
class Thresholds:
    """Parity bars, each measured against the reference (PyTorch, or the source .onnx in ONNX Runtime).

    ``fp32_rel_max_diff``: ONNX and fp32 TFLite may differ by at most this times max|logit|.
    ``fp16_min_cosine``: the lowest mean cosine similarity of fp16 outputs over the parity images
    (the mean, not the worst image: cosine is ill-conditioned on an image whose logits are all
    near zero, where the fp16 error is as small as anywhere else; the minimum is reported too).
    ``int8_min_top1``: the fraction of samples whose top-1 class matches (dynamic and int8).
    ``allow_float_fallback``: accept int8 models with ops that still compute in float.
    """

    fp32_rel_max_diff: float = 1e-4
    fp16_min_cosine: float = 0.9999
    int8_min_top1: float = 0.98
    allow_float_fallback: bool = False


@dataclass
class ConvertConfig:
    """One conversion request: the source, where to write, which artifacts, and how.

    ``source``: a checkpoint directory, a ``torch.export`` program (.pt2) or an .onnx file.
    ``calib``: data for calibration and parity (``open_dataset`` source); defaults to the
    checkpoint's training data. ``input_size``: (height, width) for .pt2/.onnx sources with
    no fixed size, or to override a checkpoint's. ``normalization``: mean/std name for
    sources that do not carry one (checkpoints do). ``dynamic_batch``: ONNX artifact with a
    symbolic batch dimension (TFLite always gets ``batch_size``). ``int8_ranges``: where the
    full-integer model's activation ranges come from: ``observers`` (our post-training
    calibration, see ``converters.observed_int8``), ``onnx2tf`` (TFLite's calibration), or
    ``auto`` (observers for checkpoints, onnx2tf for .pt2/.onnx sources).
    """

    source: str
    out_dir: str
    formats: tuple[str, ...] = FORMATS
    calib: str | None = None
    input_size: tuple[int, int] | None = None
    layout: str = "nhwc"
    int8_io: str = "int8"
    int8_ranges: str = "auto"
    opset: int = DEFAULT_OPSET
    batch_size: int = 1
    dynamic_batch: bool = False
    normalization: str | None = None
    calib_samples: int = 100
    parity_samples: int = 100
    thresholds: Thresholds = field(default_factory=Thresholds)
    cache_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.source = os.fspath(self.source)
        self.out_dir = os.fspath(self.out_dir)
        if isinstance(self.formats, str):
            self.formats = parse_formats(self.formats)
        self.formats = tuple(self.formats)
        if self.input_size is not None and not isinstance(self.input_size, tuple):
            self.input_size = parse_input_size(self.input_size)

    def validate(self) -> None:
        """Raise ``UserError`` for a request that cannot work, before any heavy work starts."""
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise UserError(f"unknown format {', '.join(map(repr, bad)) or '(none given)'}",
                            hint=f"choose from {','.join(FORMATS)}")
        if self.layout not in LAYOUTS:
            raise UserError(f"unknown layout {self.layout!r}", hint="use nhwc (Android default) or nchw")
        if self.int8_io not in INT8_IO:
            raise UserError(f"unknown int8 input/output type {self.int8_io!r}", hint="use int8, uint8 or float")
        if self.int8_ranges not in INT8_RANGES:
            raise UserError(f"unknown int8 range source {self.int8_ranges!r}",
                            hint=f"use {', '.join(INT8_RANGES)}")
        if not 18 <= self.opset <= 23:
            raise UserError(f"opset {self.opset} is not supported",
                            hint="torch's dynamo exporter writes opset 18 or newer (use 18 to 23)")
        if self.batch_size < 1:
            raise UserError(f"batch size {self.batch_size} must be >= 1", hint="use --batch-size 1")
        for name in ("calib_samples", "parity_samples"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', ' ')} must be >= 1",
                                hint=f"pass --{name.replace('_', '-')} N with N >= 1")
        if self.input_size is not None:
            require_square(self.input_size)


def require_square(size: tuple[int, int]) -> None:
    """Every conversion reads calibration images, and the data readers make square ones."""
    h, w = size
    if h != w:
        raise UserError(f"input size {h}x{w} is not square; the data readers make square images",
                        hint="convert with a square --input-size")


def parse_formats(text: str) -> tuple[str, ...]:
    """``"onnx,fp32"`` -> ``("onnx", "fp32")`` in canonical order; ``all`` means every format."""
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if names == ["all"]:
        return FORMATS
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise UserError(f"unknown format {', '.join(map(repr, bad)) or '(none given)'} in --formats {text!r}",
                        hint=f"choose from {','.join(FORMATS)} (comma-separated), or 'all'")
    return tuple(f for f in FORMATS if f in names)


def parse_input_size(value: object) -> tuple[int, int]:
    """``224``, ``"224"``, ``"160x224"``, ``"160,224"`` or ``(160, 224)`` -> (height, width)."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            parts = [value]
        elif isinstance(value, (list, tuple)):
            parts = [int(v) for v in value]
        else:
            text = str(value).lower().replace("x", ",")
            parts = [int(p) for p in text.split(",")]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or any(p < 1 or p > 4096 for p in parts):
        raise UserError(f"bad input size {value!r}",
                        hint="give one side in pixels (224) or HEIGHTxWIDTH (160x224), each 1 to 4096")
    return parts[0], parts[1]
