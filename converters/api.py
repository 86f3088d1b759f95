"""``convert(ConvertConfig) -> ConvertReport``: the steps of a conversion, in order, with progress.

check the request -> load the source -> real images (calibration + parity) -> int8 ranges ->
reference outputs -> ONNX (exported, simplified, checked) -> TFLite flavours -> report.json.

The int8 ranges are a quantized (QAT/PTQ) checkpoint's trained ones, or those our observers
measure on the calibration images for a float checkpoint's twin (``observed_int8``); either
way the int8 .tflite is made from that fake-quant model's integer graph and gets its ranges
(``range_transfer``), while one onnx2tf run makes the float flavours (and int8 when TFLite's
calibration makes it: ``int8_ranges=onnx2tf``, sources we cannot observe, the auto fallback).
A quantized checkpoint's ONNX is its integer graph and its reference the fake-quant model.
A failed or sub-par artifact is recorded; the others are still written and reported.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from converters.config import TFLITE_FORMATS, ConvertConfig
from converters.progress import Progress
from converters.report import ArtifactReport, ConvertReport
from mobile_compress.data import DataError, check_source
from mobile_compress.errors import UserError
from mobile_compress.report import package_versions, write_json

if TYPE_CHECKING:  # the data readers load with the first conversion, not with the package
    from converters.calibration import Samples
    from converters.conversion import Conversion
    from converters.source import Source

REPORT_FILE = "report.json"
ONNX_FILE = "model.onnx"
QUANTIZED_FORMATS = ("onnx", "int8")  # what a quantized checkpoint converts to
_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert")


def convert(config: ConvertConfig) -> ConvertReport:
    """Convert ``config.source`` to ``config.formats`` in ``config.out_dir``; write and return the report.

    Raises ``UserError`` for bad requests (before any model loads or anything is written).
    Threshold failures do not raise: check ``report.passed`` / ``report.problems``.
    """
    from converters import calibration
    from converters.observed_int8 import require_observable
    from converters.source import detect_kind, load_source
    from mobile_compress.quantization import is_quantized

    config.validate()
    _check_calib(config.calib)
    out_dir = _out_dir(config)
    quantized = is_quantized(config.source)
    formats = _quantized_formats(config) if quantized else config.formats
    observe = not quantized and "int8" in formats
    if observe:
        path = Path(config.source).expanduser()
        require_observable(config.int8_ranges, detect_kind(path), path)
    # counted as if our observers make the int8 model; corrected once they have seen the source
    progress = Progress(2 + observe + _steps_to_come(formats, quantized, config.int8_ranges != "onnx2tf"),
                        config.progress)
    with progress.step("load", f"loading {config.source}{' (fake-quant model)' if quantized else ''}"):
        source = load_source(config.source, config.input_size, config.normalization)
    with progress.step("data", "reading calibration and parity images"):
        samples = calibration.load_samples(source, config.calib, config.calib_samples, config.parity_samples,
                                           config.cache_dir)
    return _convert(config, formats, source, samples, quantized, out_dir, progress)


def export_int8(qmodel: Any, out_dir: str | Path, calib_nchw: np.ndarray, parity_nchw: np.ndarray,
                parity_labels: np.ndarray | None = None, *, layout: str = "nhwc", int8_io: str = "int8",
                formats: tuple[str, ...] = ("int8",), progress: bool = False) -> ConvertReport:
    """``convert`` for a fake-quant model in memory (e.g. a user's own nn.Module after ``prepare``).

    ``calib_nchw`` / ``parity_nchw``: preprocessed float32 images; the first ones also
    probe the tensors when the ranges are matched.
    """
    from converters.calibration import Samples
    from converters.source import Source

    config = ConvertConfig(source="<module>", out_dir=str(out_dir), formats=formats, layout=layout,
                           int8_io=int8_io, progress=progress)
    config.validate()
    formats = _quantized_formats(config)
    calib = np.asarray(calib_nchw, np.float32)
    parity_x = np.asarray(parity_nchw, np.float32)
    labels = np.asarray(parity_labels) if parity_labels is not None else np.full(len(parity_x), -1)
    source = Source("checkpoint", Path(str(out_dir)), (int(calib.shape[2]), int(calib.shape[3])),
                    int(calib.shape[1]), module=qmodel.eval())
    samples = Samples(calib, parity_x, labels, "<arrays>", "calib", "parity", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return _convert(config, formats, source, samples, True, _out_dir(config),
                    Progress(_steps_to_come(formats, True, True), progress))


def _convert(config: ConvertConfig, formats: tuple[str, ...], source: Source, samples: Samples, quantized: bool,
             out_dir: Path, progress: Progress) -> ConvertReport:
    """Every step after loading: int8 ranges, reference, ONNX, TFLite, report."""
    from converters import parity
    from converters.conversion import Conversion
    from converters.observed_int8 import choose_twin
    from mobile_compress.quantization import build_integer_graph

    tflite_formats = tuple(f for f in formats if f in TFLITE_FORMATS)
    twin, ranges_note = (source.module, "") if quantized else (None, "")
    if "int8" in tflite_formats and not quantized:
        with progress.step("observe", "observing int8 activation ranges on the calibration images"):
            twin, ranges_note = choose_twin(config.int8_ranges, source, samples.calib, config.batch_size)
        progress.total = progress.index + _steps_to_come(formats, False, twin is not None)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _new_report(config, source, samples, out_dir, quantized)
    with progress.step("reference", f"reference outputs ({report.reference}, {len(samples.parity)} images)"):
        if source.kind == "onnx":
            reference = parity.run_onnx(source.onnx_path, samples.parity)
        else:
            reference = parity.run_torch(source.module, samples.parity, source.batch)
    work = Path(tempfile.mkdtemp(prefix="mobile-compress-convert-"))
    run = Conversion(config, source, samples, quantized, out_dir, work, progress, report, reference)
    try:
        graph = build_integer_graph(source.module) if quantized else None
        onnx_path = (out_dir if "onnx" in formats else work) / ONNX_FILE
        onnx_result, onnx_error = None, ""
        what = "the integer graph (folded, int8-grid weights)" if quantized else "ONNX"
        with progress.step("onnx", f"exporting {what} (opset {config.opset}) and checking it"):
            try:
                onnx_result = _export_onnx(run, onnx_path, graph, config.dynamic_batch)
                report.opset = onnx_result.opset
                report.batch = "dynamic" if onnx_result.dynamic_batch else onnx_result.input_shape[0]
            except UserError:
                raise
            except Exception as err:  # noqa: BLE001 - recorded in the report, the run goes on
                onnx_error = f"ONNX export failed: {type(err).__name__}: {err}"
        if "onnx" in formats:
            report.artifacts.append(_onnx_artifact(run, onnx_path, onnx_result, onnx_error))
        if tflite_formats:
            report.artifacts.extend(_tflite_artifacts(run, tflite_formats, onnx_path if onnx_result else None, twin,
                                                      graph, ranges_note))
        write_report(report, out_dir, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _new_report(config: ConvertConfig, source: Source, samples: Samples, out_dir: Path,
               quantized: bool) -> ConvertReport:
    """The report of a conversion, before any artifact: the request, the source, the images."""
    return ConvertReport(
        source=str(source.path), source_kind="quantized" if quantized else source.kind,
        reference="pytorch fake-quant" if quantized else source.reference_name, out_dir=str(out_dir),
        input_size=source.input_size, layout=config.layout, int8_io=config.int8_io, data=samples.data,
        normalization={"mean": list(samples.mean), "std": list(samples.std)},
        calib_samples=len(samples.calib), parity_samples=len(samples.parity),
        thresholds=asdict(config.thresholds), versions=package_versions(_PACKAGES))


def write_report(report: ConvertReport, out_dir: Path, progress: Progress) -> None:
    """The last step of every conversion: the step timings into the report, the report into report.json."""
    with progress.step("report", f"writing {out_dir / REPORT_FILE}"):
        report.timings = dict(progress.timings)
        write_json(out_dir / REPORT_FILE, report.to_dict())


def _export_onnx(run: Conversion, onnx_path: Path, graph: Any = None, dynamic_batch: bool = False) -> Any:
    """ONNX of the source's model, or of ``graph``'s (an ``IntegerGraph``: folded, int8-grid weights)."""
    from converters.onnx_export import export_onnx

    source = run.source if graph is None else replace(run.source, module=graph.module)
    return export_onnx(source, onnx_path, opset=run.config.opset, batch_size=run.config.batch_size,
                       dynamic_batch=dynamic_batch)


def _onnx_artifact(run: Conversion, onnx_path: Path, result: Any, error: str) -> ArtifactReport:
    """The ONNX artifact, compared with the reference where it computes the same function.

    A quantized source's ONNX is its integer graph: its activations are not rounded until the
    .tflite carries the ranges, so it is not held to the fake-quant model's outputs.
    """
    from converters import parity

    art = ArtifactReport("onnx")
    if result is None:
        art.error = error
        return art
    art.path, art.size_bytes = str(onnx_path), onnx_path.stat().st_size
    art.io = {"dtype": "float32", "shape": result.input_shape, "opset": result.opset, "simplified": result.simplified}
    if run.quantized:
        art.io["note"] = "the integer graph in float; its int8 ranges are in the .tflite"
    else:
        art.parity = parity.compare(run.reference, parity.run_onnx(onnx_path, run.samples.parity), run.labels)
        art.problems = parity.judge("onnx", art.parity, run.config.thresholds)
    return art


def _tflite_artifacts(run: Conversion, formats: tuple[str, ...], onnx_path: Path | None, twin: Any, graph: Any,
                      ranges_note: str) -> list[ArtifactReport]:
    """One onnx2tf run for what TFLite's calibration makes; int8 from ``twin``'s integer graph where there is
    a fake-quant model, falling back to onnx2tf's calibration under ``int8_ranges=auto`` when that fails."""
    from converters.tflite_artifacts import onnx2tf_artifacts

    if onnx_path is None:
        return [ArtifactReport(fmt, error="no ONNX model to convert (ONNX export failed)") for fmt in formats]
    by_onnx2tf = tuple(f for f in formats if f != "int8" or twin is None)
    arts = {a.format: a for a in onnx2tf_artifacts(run, by_onnx2tf, onnx_path)} if by_onnx2tf else {}
    if twin is not None:
        arts["int8"] = _int8_with_our_ranges(run, twin, graph, onnx_path)
        if arts["int8"].error and not run.quantized and run.config.int8_ranges == "auto":
            failed = arts["int8"].error.splitlines()[0]
            arts["int8"] = onnx2tf_artifacts(run, ("int8",), onnx_path, planned=False)[0]
            ranges_note = f"onnx2tf calibration (observed ranges failed: {failed})"
    if "int8" in arts and ranges_note:
        arts["int8"].io["ranges"] = ranges_note
    return [arts[f] for f in formats]


def _int8_with_our_ranges(run: Conversion, twin: Any, graph: Any, onnx_path: Path) -> ArtifactReport:
    """int8 from a fake-quant model's integer graph; a failure is recorded as the artifact's error.

    A quantized checkpoint's ``graph`` is its ONNX artifact already, and as nothing has calibrated on
    the calibration images, TFLite's converter does (its ranges stay where the transfer leaves a
    tensor unmapped). The observed ``twin``'s ranges were measured on those images: its integer graph
    is exported here and TFLite's converter only lays out the int8 graph on the probe images.
    """
    from converters.range_transfer import PROBE_IMAGES
    from converters.tflite_artifacts import int8_artifact
    from mobile_compress.quantization import build_integer_graph

    with run.progress.section(2 if run.quantized else 3):
        try:
            if run.quantized:
                return int8_artifact(run, graph, onnx_path, run.samples.calib)
            graph, graph_onnx = build_integer_graph(twin), run.work / "integer_graph.onnx"
            with run.progress.step("integer_graph", "exporting the observed int8 twin's integer graph to ONNX"):
                _export_onnx(run, graph_onnx, graph)
            return int8_artifact(run, graph, graph_onnx, run.samples.calib[:PROBE_IMAGES])
        except Exception as err:  # noqa: BLE001 - recorded; auto falls back to onnx2tf's calibration
            what = "trained" if run.quantized else "observed"
            return ArtifactReport("int8", error=f"int8 with {what} ranges failed: {type(err).__name__}: {err}")


def _check_calib(calib: str | None) -> None:
    """The calibration data can be opened: checked when converting, before any model loads. Not in
    ``ConvertConfig.validate``, which a recipe runs when it is parsed, before earlier stages or a download made it."""
    if calib is None:
        return
    try:
        check_source(calib)
    except DataError as err:
        raise UserError(f"--calib: {err.message}", hint=err.hint) from None


def _out_dir(config: ConvertConfig) -> Path:
    out_dir = Path(config.out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file", hint="pass a directory for the artifacts")
    return out_dir


def _quantized_formats(config: ConvertConfig) -> tuple[str, ...]:
    """The asked formats a quantized checkpoint converts to (onnx, int8); a note names the others."""
    dropped = [f for f in config.formats if f not in QUANTIZED_FORMATS]
    formats = tuple(f for f in config.formats if f in QUANTIZED_FORMATS)
    if not formats:
        raise UserError(f"{config.source} is a quantized checkpoint: it converts to int8 (and onnx), not to "
                        f"{','.join(config.formats)}", hint="pass --formats int8 (or convert the float checkpoint)")
    if dropped and config.progress:
        print(f"note: {config.source} is quantized; writing {','.join(formats)} only (not {','.join(dropped)})")
    return formats


def _steps_to_come(formats: tuple[str, ...], quantized: bool, ours: bool) -> int:
    """Steps after loading, reading and observing: reference, onnx, report; the onnx2tf run and its parity
    check; for int8 with our ranges, onnx2tf and the range transfer (after the twin's integer graph)."""
    ours = ours and "int8" in formats
    by_onnx2tf = [f for f in formats if f in TFLITE_FORMATS and (f != "int8" or not ours)]
    return 3 + 2 * bool(by_onnx2tf) + ours * (2 if quantized else 3)


__all__ = ["ONNX_FILE", "QUANTIZED_FORMATS", "REPORT_FILE", "convert", "export_int8", "write_report"]
