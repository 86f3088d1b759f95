"""`export-app`: the app bundle (model.tflite with metadata, labels, model card, Kotlin) of the checkpoint before it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from converters.app_bundle import APP_FORMATS, AppExportConfig, export_app
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, TFLITE, ParseContext, RunContext, StageResult
from workflows.recipes.stages.common import data_option


@dataclass
class ExportAppOptions:
    values: dict[str, Any]


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
        return ExportAppOptions(values)

    def run(self, o: ExportAppOptions, ctx: RunContext) -> StageResult:
        assert ctx.input is not None
        bundle = export_app(AppExportConfig(source=ctx.input, out_dir=str(ctx.stage_dir), cache_dir=ctx.cache_dir,
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
            "files": {k: str(v) for k, v in bundle.files.items()}}, source_checkpoint=ctx.input)
