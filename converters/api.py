"""``convert(ConvertConfig) -> ConvertReport``: the steps of a conversion, in order, with progress.

load the source -> real images (calibration + parity) -> reference outputs ->
ONNX (exported, simplified, checked) -> TFLite flavours (one onnx2tf run) ->
parity and float-fallback checks per artifact -> report.json.
A failed or sub-par artifact is recorded; the others are still written and reported.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Iterator, TextIO

from converters.config import TFLITE_FORMATS, ConvertConfig
from converters.report import ArtifactReport, ConvertReport
from mobile_compress.errors import UserError
from mobile_compress.report import write_json

REPORT_FILE = "report.json"
ONNX_FILE = "model.onnx"
_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert")


class Progress:
    """One line per step on stderr: ``[2/6] exporting ONNX ... done (1.2 s)``."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.enabled, self.stream, self.index = total, enabled, stream or sys.stderr, 0
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, text: str) -> Iterator[None]:
        self.index += 1
        if self.enabled:
            print(f"[{self.index}/{self.total}] {text} ...", file=self.stream, flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = time.perf_counter() - start
            if self.enabled:
                print(f"      {key} took {self.timings[key]:.1f} s", file=self.stream, flush=True)


def convert(config: ConvertConfig) -> ConvertReport:
    """Convert ``config.source`` to ``config.formats`` in ``config.out_dir``; write and return the report.

    Raises ``UserError`` for bad requests (before anything is written). Threshold
    failures do not raise: check ``report.passed`` / ``report.problems``.
    """
    from converters import calibration, parity
    from converters.onnx_export import export_onnx
    from converters.source import load_source

    config.validate()
    from converters.qat_export import convert_quantized, is_quantized_checkpoint

    if is_quantized_checkpoint(config.source):  # QAT/PTQ: the int8 .tflite gets the trained ranges
        return convert_quantized(config)
    tflite_formats = tuple(f for f in config.formats if f in TFLITE_FORMATS)
    # counted as if our observers make the int8 model; corrected once choose_twin has seen the source
    progress = Progress(_step_count(tflite_formats, config.int8_ranges != "onnx2tf"), config.progress)
    out_dir = Path(config.out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file", hint="pass a directory for the artifacts")

    with progress.step("load", f"loading {config.source}"):
        source = load_source(config.source, config.input_size, config.normalization)
    with progress.step("data", "reading calibration and parity images"):
        samples = calibration.load_samples(source, config.calib, config.calib_samples, config.parity_samples,
                                           config.cache_dir)
    twin, ranges_note = None, ""
    if "int8" in tflite_formats:
        from converters.observed_int8 import choose_twin

        with progress.step("observe", "observing int8 activation ranges on the calibration images"):
            twin, ranges_note = choose_twin(config.int8_ranges, source, samples.calib, config.batch_size)
        progress.total = _step_count(tflite_formats, twin is not None)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ConvertReport(
        source=str(source.path), source_kind=source.kind, reference=source.reference_name, out_dir=str(out_dir),
        input_size=source.input_size, layout=config.layout, int8_io=config.int8_io, data=samples.data,
        normalization={"mean": list(samples.mean), "std": list(samples.std)},
        calib_samples=len(samples.calib), parity_samples=len(samples.parity),
        thresholds=asdict(config.thresholds), versions=_versions())
    with progress.step("reference", f"reference outputs ({source.reference_name}, {len(samples.parity)} images)"):
        if source.kind == "onnx":
            reference = parity.run_onnx(source.onnx_path, samples.parity)
        else:
            reference = parity.run_torch(source.module, samples.parity, source.batch)

    work = Path(tempfile.mkdtemp(prefix="mobile-compress-convert-"))
    try:
        onnx_path = (out_dir if "onnx" in config.formats else work) / ONNX_FILE
        onnx_result, onnx_error = None, ""
        with progress.step("onnx", f"exporting ONNX (opset {config.opset}) and checking it"):
            try:
                onnx_result = export_onnx(source, onnx_path, opset=config.opset, batch_size=config.batch_size,
                                          dynamic_batch=config.dynamic_batch)
                report.opset = onnx_result.opset
                report.batch = "dynamic" if onnx_result.dynamic_batch else onnx_result.input_shape[0]
            except UserError:
                raise
            except Exception as err:  # noqa: BLE001 - recorded in the report, the run goes on
                onnx_error = f"ONNX export failed: {type(err).__name__}: {err}"
        if "onnx" in config.formats:
            art = ArtifactReport("onnx")
            if onnx_result is None:
                art.error = onnx_error
            else:
                art.path, art.size_bytes = str(onnx_path), onnx_path.stat().st_size
                art.io = {"dtype": "float32", "shape": onnx_result.input_shape, "opset": onnx_result.opset,
                          "simplified": onnx_result.simplified}
                art.parity = parity.compare(reference, parity.run_onnx(onnx_path, samples.parity),
                                            samples.parity_labels)
                art.problems = parity.judge("onnx", art.parity, config.thresholds)
            report.artifacts.append(art)
        if tflite_formats:
            report.artifacts.extend(_tflite_artifacts(config, tflite_formats, source, onnx_result, onnx_path, work,
                                                      out_dir, samples, reference, progress, report, twin,
                                                      ranges_note))
        write_report(report, out_dir, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def write_report(report: ConvertReport, out_dir: Path, progress: Progress) -> None:
    """The last step of every conversion: the step timings into the report, the report into report.json."""
    with progress.step("report", f"writing {out_dir / REPORT_FILE}"):
        report.timings = dict(progress.timings)
        write_json(out_dir / REPORT_FILE, report.to_dict())


def _tflite_artifacts(config: ConvertConfig, formats: tuple[str, ...], source, onnx_result, onnx_path: Path,
                      work: Path, out_dir: Path, samples, reference, progress: Progress, report: ConvertReport,
                      twin=None, ranges_note: str = "") -> list[ArtifactReport]:
    """The TFLite artifacts: one onnx2tf run for the float flavours (and int8 when onnx2tf calibrates it);
    with an observed ``twin``, int8 from its deployed graph and ranges, falling back to onnx2tf's under auto."""
    if onnx_result is None:
        return [ArtifactReport(fmt, error="no ONNX model to convert (ONNX export failed)") for fmt in formats]
    first = tuple(f for f in formats if f != "int8" or twin is None)
    arts = {a.format: a for a in _onnx2tf_artifacts(config, first, onnx_path, work, out_dir, samples, reference,
                                                    progress, report)} if first else {}
    if twin is not None:
        from converters.qat_export import export_deployed, int8_artifact

        deployed_path = work / "deployed.onnx"
        try:
            with progress.step("deploy", "exporting the observed int8 twin's deployed graph to ONNX"):
                export_deployed(dataclasses.replace(source, module=twin), deployed_path, config)
            art = int8_artifact(twin, deployed_path, samples, config, reference, samples.parity_labels, work,
                                out_dir, progress)
        except Exception as err:  # noqa: BLE001 - recorded; auto falls back to onnx2tf's calibration
            art = ArtifactReport("int8", error=f"int8 with observed ranges failed: {type(err).__name__}: {err}")
        if art.error and config.int8_ranges == "auto":
            failed = art.error.splitlines()[0]
            art = _onnx2tf_artifacts(config, ("int8",), onnx_path, work, out_dir, samples, reference, progress,
                                     report)[0]
            ranges_note = f"onnx2tf calibration (observed ranges failed: {failed})"
        arts["int8"] = art
    if "int8" in arts and ranges_note:
        arts["int8"].io["ranges"] = ranges_note
    return [arts[f] for f in formats]


def _onnx2tf_artifacts(config: ConvertConfig, formats: tuple[str, ...], onnx_path: Path, work: Path, out_dir: Path,
                       samples, reference, progress: Progress, report: ConvertReport) -> list[ArtifactReport]:
    from converters import parity
    from converters.onnx2tf_runner import Onnx2TfError, build_tflite
    from converters.tflite_inspect import float_fallback, interpreter, op_counts

    arts = {fmt: ArtifactReport(fmt) for fmt in formats}
    build = None
    with progress.step("tflite", f"converting to TFLite ({', '.join(formats)}; {config.layout.upper()} input) "
                                 "with onnx2tf"):
        try:
            build = build_tflite(onnx_path, work / f"onnx2tf-{'-'.join(formats)}", formats, samples.calib,
                                 layout=config.layout, int8_io=config.int8_io, batch_size=config.batch_size)
        except Onnx2TfError as err:
            for art in arts.values():
                art.error = str(err)
    if build is None:
        return list(arts.values())
    progress.timings.update({f"tflite_{step}": s for step, s in build.seconds.items()})
    report.graph_rewrites = build.rewrites
    with progress.step("parity", f"checking {len(formats)} TFLite artifact(s) on {len(samples.parity)} images"):
        for fmt, art in arts.items():
            if fmt not in build.files:
                art.error = build.missing.get(fmt, "not produced")
                continue
            path = out_dir / f"model_{fmt}.tflite"
            shutil.copyfile(build.files[fmt], path)
            art.path, art.size_bytes = str(path), path.stat().st_size
            try:
                interp = interpreter(path, delegates=False)
                detail_in, detail_out = interp.get_input_details()[0], interp.get_output_details()[0]
                art.io = {"dtype": f"{detail_in['dtype'].__name__}/{detail_out['dtype'].__name__}",
                          "shape": [int(v) for v in detail_in["shape"]],
                          "input_quantization": list(detail_in["quantization"]),
                          "output_quantization": list(detail_out["quantization"])}
                art.ops = op_counts(path)
                if fmt == "int8":
                    art.float_fallback = float_fallback(path)
                art.parity = parity.compare(reference, parity.run_tflite(path, samples.parity, config.layout),
                                            samples.parity_labels)
                art.problems = parity.judge(fmt, art.parity, config.thresholds,
                                            len(art.float_fallback or []))
            except Exception as err:  # noqa: BLE001 - a broken artifact is reported, not fatal
                art.error = f"cannot run {path.name}: {type(err).__name__}: {err}"
    return list(arts.values())


def _step_count(tflite_formats: tuple[str, ...], observed_int8: bool) -> int:
    """load, data, reference, onnx, report; observe for int8; onnx2tf + parity; deploy, onnx2tf, ranges."""
    observed_int8 = observed_int8 and "int8" in tflite_formats
    first = [f for f in tflite_formats if f != "int8" or not observed_int8]
    return 5 + ("int8" in tflite_formats) + 2 * bool(first) + 3 * observed_int8


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
