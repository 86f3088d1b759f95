"""The stage registry: kind -> stage object. Each kind lives in its own module."""
from __future__ import annotations

from workflows.recipes.stages.base import CHECKPOINT, OTHER, TFLITE, ParseContext, Ref, RunContext, Stage, StageResult
from workflows.recipes.stages.convert import ConvertStage
from workflows.recipes.stages.distill import DistillStage
from workflows.recipes.stages.export_app import ExportAppStage
from workflows.recipes.stages.factorize import FactorizeStage
from workflows.recipes.stages.profile import ProfileStage
from workflows.recipes.stages.prune import PruneStage
from workflows.recipes.stages.quantize import QuantizeStage
from workflows.recipes.stages.train import TrainStage

#: In chain order: start (train or distill) -> compress -> convert -> app bundle -> profile.
REGISTRY: dict[str, Stage] = {s.kind: s for s in (TrainStage(), DistillStage(), PruneStage(), FactorizeStage(),
                                                  QuantizeStage(), ConvertStage(), ExportAppStage(), ProfileStage())}

__all__ = ["CHECKPOINT", "OTHER", "REGISTRY", "TFLITE", "ParseContext", "Ref", "RunContext", "Stage", "StageResult"]
