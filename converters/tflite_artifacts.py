"""The TFLite artifacts of a conversion, and the one check every written .tflite gets.

``onnx2tf_artifacts``: one onnx2tf run for the float flavours, and for int8 when TFLite's
calibration makes it. ``int8_artifact``: int8 from a fake-quant model's integer graph, its
ranges written in by ``range_transfer``. ``inspect_tflite``: input/output types, ops, float
fallback and parity of a .tflite, into its ``ArtifactReport``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from converters.conversion import Conversion
from converters.report import ArtifactReport
from mobile_compress.quantization import IntegerGraph


def onnx2tf_artifacts(run: Conversion, formats: tuple[str, ...], onnx_path: Path,
                      planned: bool = True) -> list[ArtifactReport]:
    """``formats`` from ``onnx_path``; TFLite's converter calibrates int8 on every calibration image.

    ``planned``: whether the run counted these two steps (a fallback is not counted ahead)."""
    from converters.onnx2tf_runner import Onnx2TfError, build_tflite

    config, progress = run.config, run.progress
    arts = {fmt: ArtifactReport(fmt) for fmt in formats}
    with progress.section(2, planned):
        with progress.step("tflite", f"converting to TFLite ({', '.join(formats)}; {config.layout.upper()} input) "
                                     "with onnx2tf"):
            try:
                build = build_tflite(onnx_path, run.work / f"onnx2tf-{'-'.join(formats)}", formats, run.samples.calib,
                                     layout=config.layout, int8_io=config.int8_io, batch_size=config.batch_size)
            except Onnx2TfError as err:
                for art in arts.values():
                    art.error = str(err)
                return list(arts.values())
        progress.timings.update({f"tflite_{step}": s for step, s in build.seconds.items()})
        run.report.graph_rewrites = build.rewrites
        with progress.step("parity", f"checking {len(formats)} TFLite artifact(s) on {len(run.samples.parity)} images"):
            for fmt, art in arts.items():
                if fmt not in build.files:
                    art.error = build.missing.get(fmt, "not produced")
                    continue
                path = run.out_dir / f"model_{fmt}.tflite"
                shutil.copyfile(build.files[fmt], path)
                inspect_tflite(run, art, path)
    return list(arts.values())


def int8_artifact(run: Conversion, graph: IntegerGraph, graph_onnx: Path, calib: np.ndarray) -> ArtifactReport:
    """The int8 .tflite of ``graph``: onnx2tf on its ONNX, then its ranges written in, then the check.

    ``calib``: the images TFLite's converter calibrates on to lay out the int8 graph; the
    transfer replaces what it measures wherever it finds the tensor's quantizer.
    """
    from converters.onnx2tf_runner import Onnx2TfError, build_tflite
    from converters.range_transfer import PROBE_IMAGES, transfer_ranges

    config, progress = run.config, run.progress
    art = ArtifactReport("int8")
    with progress.step("tflite_int8", "converting the integer graph to int8 TFLite with onnx2tf"):
        try:
            build = build_tflite(graph_onnx, run.work / "onnx2tf-int8", ("int8",), calib, layout=config.layout,
                                 int8_io=config.int8_io, batch_size=config.batch_size)
        except Onnx2TfError as err:
            art.error = str(err)
            return art
    if "int8" not in build.files:
        art.error = build.missing.get("int8", "not produced")
        return art
    path = run.out_dir / "model_int8.tflite"
    with progress.step("ranges", "writing the int8 ranges into the .tflite and checking parity"):
        transfer = transfer_ranges(build.files["int8"], path, graph, run.samples.calib[:PROBE_IMAGES], config.layout)
        inspect_tflite(run, art, path)
        art.io["range_transfer"] = transfer.to_dict()
        art.problems += [f"int8: {c}" for c in transfer.conflicts]
    return art


def inspect_tflite(run: Conversion, art: ArtifactReport, path: Path) -> None:
    """Fill ``art`` from the .tflite at ``path``: io, ops, float fallback (int8), parity and its verdict.

    A file that cannot run is recorded as the artifact's error, not raised.
    """
    from converters import parity
    from converters.tflite_inspect import float_fallback, op_counts
    from mobile_compress.litert import interpreter

    art.path, art.size_bytes = str(path), path.stat().st_size
    try:
        interp = interpreter(path, delegates=False)
        detail_in, detail_out = interp.get_input_details()[0], interp.get_output_details()[0]
        art.io = {"dtype": f"{detail_in['dtype'].__name__}/{detail_out['dtype'].__name__}",
                  "shape": [int(v) for v in detail_in["shape"]],
                  "input_quantization": list(detail_in["quantization"]),
                  "output_quantization": list(detail_out["quantization"])}
        art.ops = op_counts(path)
        if art.format == "int8":
            art.float_fallback = float_fallback(path)
        art.parity = parity.compare(run.reference, parity.run_tflite(path, run.samples.parity, run.config.layout),
                                    run.labels)
        art.problems = parity.judge(art.format, art.parity, run.config.thresholds, len(art.float_fallback or []))
    except Exception as err:  # noqa: BLE001 - a broken artifact is reported, not fatal
        art.error = f"cannot run {path.name}: {type(err).__name__}: {err}"


__all__ = ["inspect_tflite", "int8_artifact", "onnx2tf_artifacts"]
