"""What an app export is asked to do; free of heavy imports so the CLI validates first."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from mobile_compress.errors import UserError

# The TFLite flavour put in the bundle. int8 is converted with float32 input and output
# (int8 compute inside): MediaPipe Tasks accept only uint8 or float32 image inputs and
# uint8 or float32 outputs, and a float input carries the normalisation in the metadata.
APP_FORMATS = ("int8", "fp32", "fp16", "dynamic")
MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
KOTLIN_FILE = "MainActivity.kt"


@dataclass
class AppExportConfig:
    """One export request.

    ``source``: a checkpoint directory (converted here), a ``convert`` output directory, or
    a .tflite file. ``checkpoint``: the checkpoint behind a converted source (found in the
    conversion's report.json when omitted). ``data``: images to measure the .tflite's
    accuracy on (its test split); also calibrates int8 when converting. ``labels_file``:
    class names, one per line, for checkpoints that carry none. ``fold_normalization``: build a
    per-channel mean/std into the converted model (MediaPipe takes one mean/std for all channels).
    """

    source: str
    out_dir: str
    format: str = "int8"
    checkpoint: str | None = None
    name: str | None = None
    version: str = "1.0.0"
    license: str = "Apache-2.0"
    author: str | None = None
    description: str | None = None
    data: str | None = None
    labels_file: str | None = None
    eval_samples: int | None = None
    latency_runs: int = 50
    calib_samples: int = 100
    parity_samples: int = 100
    cache_dir: str | None = None
    fold_normalization: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        self.source = os.fspath(self.source)
        self.out_dir = os.fspath(self.out_dir)
        for name in ("checkpoint", "labels_file"):
            if getattr(self, name) is not None:
                setattr(self, name, os.fspath(getattr(self, name)))

    def validate(self) -> None:
        """``UserError`` for a request that cannot work, before anything is loaded."""
        if self.format not in APP_FORMATS:
            raise UserError(f"unknown --format {self.format!r}", hint=f"choose one of {', '.join(APP_FORMATS)}")
        if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}", self.version or ""):
            raise UserError(f"--version {self.version!r} is not a version string",
                            hint="use letters, digits and . + _ - (for example 1.0.0)")
        for field_name in ("name", "license", "author", "description"):
            value = getattr(self, field_name)
            if value is not None and not str(value).strip():
                raise UserError(f"--{field_name} is empty", hint=f"leave out --{field_name} or give it a value")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise UserError("--eval-samples must be >= 1", hint="leave it out to use every test image")
        if self.latency_runs < 0:
            raise UserError("--latency-runs must be >= 0", hint="use 0 to skip the host latency measurement")
        out = os.path.expanduser(self.out_dir)
        if os.path.exists(out) and not os.path.isdir(out):
            raise UserError(f"--out {out} is a file", hint="pass a directory for the bundle")
