"""One conversion under way: the request, what was loaded, where it writes, and the report it fills."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.calibration import Samples
from converters.config import ConvertConfig
from converters.progress import Progress
from converters.report import ConvertReport
from converters.source import Source


@dataclass
class Conversion:
    """What every step of ``convert`` reads.

    ``quantized``: the source is a fake-quant (QAT/PTQ) model; its ONNX is its integer graph and
    its int8 .tflite gets its trained ranges. ``reference``: the outputs each artifact is compared
    with (the fake-quant model's for a quantized source). ``work``: a private folder, removed after.
    """

    config: ConvertConfig
    source: Source
    samples: Samples
    quantized: bool
    out_dir: Path
    work: Path
    progress: Progress
    report: ConvertReport
    reference: np.ndarray

    @property
    def labels(self) -> np.ndarray | None:
        """The parity images' labels, where all are known (arrays handed to ``export_int8`` may have none)."""
        labels = self.samples.parity_labels
        return labels if (labels >= 0).all() else None
