"""`convert`: the checkpoint before it to ONNX and TFLite, with the converter's parity report."""
from __future__ import annotations

from dataclasses import dataclass, fields as dataclass_fields
from typing import Any

from converters import ConvertConfig, Thresholds, convert
from workflows.recipes.fields import Fields, data_source
from workflows.recipes.stages.base import CHECKPOINT, TFLITE, ParseContext, RunContext, StageResult

#: ConvertConfig fields a recipe may set; the source, output folder and cache come from the run.
OPTIONS = tuple(f.name for f in dataclass_fields(ConvertConfig)
                if f.name not in ("source", "out_dir", "cache_dir", "progress", "thresholds"))
THRESHOLDS = tuple(f.name for f in dataclass_fields(Thresholds))


@dataclass
class ConvertOptions:
    values: dict[str, Any]
    thresholds: dict[str, Any]


class ConvertStage:
    kind = "convert"
    consumes = CHECKPOINT
    produces = TFLITE

    def parse(self, f: Fields, ctx: ParseContext) -> ConvertOptions:
        values = {k: f.raw(k) for k in OPTIONS if f.has(k)}
        if "formats" in values and isinstance(values["formats"], list):
            values["formats"] = ",".join(map(str, values["formats"]))
        if "calib" in values:
            values["calib"] = data_source(f, "calib", f.str("calib"), ctx.check_files)
        elif ctx.data is not None:
            values["calib"] = ctx.data
        th = Fields(f.mapping("thresholds"), f.path("thresholds"))
        thresholds = {}
        for name in THRESHOLDS:
            if th.has(name):
                default = getattr(Thresholds(), name)
                thresholds[name] = (th.bool(name, default) if isinstance(default, bool) else
                                    th.number(name, default, low=0.0, what="a number > 0"))
        th.done()
        for key in values:
            f.wrap(key, lambda: ConvertConfig(source="-", out_dir="-", **{key: values[key]}).validate())
        f.wrap("thresholds", lambda: Thresholds(**thresholds))
        f.wrap(None, lambda: ConvertConfig(source="-", out_dir="-", **values).validate())
        return ConvertOptions(values, thresholds)

    def run(self, o: ConvertOptions, ctx: RunContext) -> StageResult:
        assert ctx.input is not None
        report = convert(ConvertConfig(source=ctx.input, out_dir=str(ctx.stage_dir), cache_dir=ctx.cache_dir,
                                       thresholds=Thresholds(**o.thresholds), **o.values))
        if not report.passed:
            for problem in report.problems:
                ctx.log(f"warning: {problem}")
        artifacts = {a.format: {"path": a.path, "size_bytes": a.size_bytes, "passed": a.passed, "error": a.error,
                                "top1_accuracy": a.parity.top1_accuracy if a.parity else None,
                                "parity_samples": a.parity.samples if a.parity else None}
                     for a in report.artifacts}
        return StageResult(str(ctx.stage_dir), TFLITE, {"passed": report.passed, "problems": report.problems,
                                                        "artifacts": artifacts}, source_checkpoint=ctx.input)
