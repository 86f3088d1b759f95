"""`export-app`: the app bundle (model.tflite with metadata, labels, model card, Kotlin) of the checkpoint before it.

Where a convert stage before it converted the same checkpoint to the model the bundle needs (same format,
float32 NHWC input and output, nothing to fold in), the bundle takes that .tflite and its parity figures
instead of converting again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters.app_bundle import APP_FORMATS, AppExportConfig, conversion_mismatch, export_app
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, TFLITE, ParseContext, RunContext, StageResult
from workflows.recipes.stages.common import data_option


@dataclass
class ExportAppOptions:
    values: dict[str, Any]
    convert_stages: list[int] = field(default_factory=list)  # the convert stages before it, whose models it may take


class ExportAppStage:
    kind = "export-app"
    consumes = CHECKPOINT
    produces = TFLITE

    def parse(self, f: Fields, ctx: ParseContext) -> ExportAppOptions:
        values: dict[str, Any] = {"format": f.choice("format", APP_FORMATS, "int8"), "data": data_option(f, ctx)}
        for key in ("name", "version", "license", "author", "description"):
            if f.has(key):
                values[key] = f.str(key)
        for key, minimum in (("eval_samples", 1), ("latency_runs", 0), ("calib_samples", 1), ("parity_samples", 1)):
            if f.has(key):
                values[key] = f.int(key, minimum=minimum)
        if f.has("fold_normalization"):
            values["fold_normalization"] = f.bool("fold_normalization", True)
        f.wrap(None, lambda: AppExportConfig(source="-", out_dir="-", **values).validate())
        return ExportAppOptions(values, [i for i, (kind, _) in enumerate(ctx.earlier) if kind == "convert"])

    def run(self, o: ExportAppOptions, ctx: RunContext) -> StageResult:
        assert ctx.input is not None
        converted = _converted(o, ctx)
        source = {"source": converted, "checkpoint": ctx.input} if converted else {"source": ctx.input}
        bundle = export_app(AppExportConfig(out_dir=str(ctx.stage_dir), cache_dir=ctx.cache_dir, **source,
                                            **o.values))
        for problem in bundle.problems:
            ctx.log(f"warning: {problem}")
        model = bundle.files["model"]
        accuracy = (bundle.card.get("accuracy") or {}).get("tflite") or {}
        return StageResult(str(ctx.stage_dir), TFLITE, {
            "passed": bundle.passed, "problems": bundle.problems,
            "artifacts": {o.values["format"]: {"path": str(model), "size_bytes": model.stat().st_size,
                                               "top1_accuracy": accuracy.get("tflite_top1"),
                                               "parity_samples": accuracy.get("samples")}},
            "files": {k: str(v) for k, v in bundle.files.items()}, "converted_by": converted},
            source_checkpoint=ctx.input)


def _converted(o: ExportAppOptions, ctx: RunContext) -> str | None:
    """The output folder of the latest convert stage whose model the bundle can take as is, or None."""
    fmt = o.values["format"]
    fold = o.values.get("fold_normalization", AppExportConfig.fold_normalization)
    for index in reversed(o.convert_stages):
        folder = ctx.results[index].artifact
        why = conversion_mismatch(folder, fmt, ctx.input, fold)
        if why is None:
            ctx.log(f"export-app: bundling the {fmt} model of {folder} (no second conversion)")
            return folder
        ctx.log(f"export-app: not taking the {fmt} model of {folder}: {why}")
    return None
