"""The stage registry: kind -> stage object. Each kind lives in its own module."""
from __future__ import annotations

from mobile_compress.pipeline.stages.base import CHECKPOINT, OTHER, TFLITE, ParseContext, Ref, RunContext, Stage, StageResult
from mobile_compress.pipeline.stages.convert import ConvertStage
from mobile_compress.pipeline.stages.distill import DistillStage
from mobile_compress.pipeline.stages.export_app import ExportAppStage
from mobile_compress.pipeline.stages.factorize import FactorizeStage
from mobile_compress.pipeline.stages.profile import ProfileStage
from mobile_compress.pipeline.stages.prune import PruneStage
from mobile_compress.pipeline.stages.quantize import QuantizeStage
from mobile_compress.pipeline.stages.train import TrainStage

#: In chain order: start (train or distill) -> compress -> convert -> app bundle -> profile.
REGISTRY: dict[str, Stage] = {s.kind: s for s in (TrainStage(), DistillStage(), PruneStage(), FactorizeStage(),
                                                  QuantizeStage(), ConvertStage(), ExportAppStage(), ProfileStage())}

__all__ = ["CHECKPOINT", "OTHER", "REGISTRY", "TFLITE", "ParseContext", "Ref", "RunContext", "Stage", "StageResult"]
