"""Quantize a checkpoint, then convert it to the int8 .tflite that must compute what its simulation computes.

The `quantize` command and the recipes' quantize stage both call ``quantize_and_convert``;
the stage leaves the conversion to its recipe's convert stage (``conversion=None``).
OUT/quantize.json holds the summary row: the float, fake-quant and .tflite accuracies side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters import ConvertConfig, ConvertReport, Thresholds, convert
from mobile_compress.quantization import QuantizeJob, QuantizeJobResult, run_quantize_job
from mobile_compress.report import write_json

SUMMARY_FILE = "quantize.json"
INT8_DIR = "int8"  # OUT/int8/: the conversion of the quantized checkpoint


@dataclass
class Int8Conversion:
    """How the quantized checkpoint becomes a full-integer .tflite, and the bar it must meet:
    ``min_agreement``, the top-1 agreement with the fake-quant model on ``parity_samples`` held-out images."""

    layout: str = "nhwc"
    int8_io: str = "int8"
    parity_samples: int = 200
    min_agreement: float = 0.99
    progress: bool = True


@dataclass
class QuantizeOutcome:
    """The quantization job's result, the conversion's report (None when not converted) and the summary row."""

    job: QuantizeJobResult
    report: ConvertReport | None
    row: dict[str, Any]

    @property
    def problems(self) -> list[str]:
        """Failed conversions and missed bars; empty when the .tflite matches its simulation (or none was made)."""
        return self.report.problems if self.report is not None else []


def quantize_and_convert(job: QuantizeJob, conversion: Int8Conversion | None = None) -> QuantizeOutcome:
    """Run ``job``; with ``conversion``, convert its checkpoint into ``job.out_dir/int8/`` (calibrated on
    ``job.data``) and fold the parity figures into the row. Writes ``job.out_dir/quantize.json``."""
    result = run_quantize_job(job)
    row: dict[str, Any] = {"model": Path(job.checkpoint).name, "method": job.method,
                           "float_top1": result.float_eval.top1, "sim_top1": result.quantized_eval.top1,
                           "checkpoint": str(result.checkpoint)}
    report = None
    if conversion is not None:
        report = convert(ConvertConfig(
            source=str(result.checkpoint), out_dir=str(Path(job.out_dir) / INT8_DIR), formats=("int8",),
            calib=job.data, layout=conversion.layout, int8_io=conversion.int8_io,
            parity_samples=conversion.parity_samples, thresholds=Thresholds(int8_min_top1=conversion.min_agreement),
            cache_dir=job.cache_dir, progress=conversion.progress))
        art = report.artifact("int8")
        if art.parity is not None:
            row.update(tflite_agreement=art.parity.top1_agreement, tflite_top1=art.parity.top1_accuracy,
                       tflite=art.path, sim_top1_parity_set=art.parity.reference_top1_accuracy)
        row["range_transfer"] = art.io.get("range_transfer")
    write_json(Path(job.out_dir) / SUMMARY_FILE, row)
    return QuantizeOutcome(result, report, row)
