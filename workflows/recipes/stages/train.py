"""`train`: a zoo model trained from scratch (or from ``init`` weights); the usual first stage."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, ParseContext, RunContext, StageResult
from workflows.recipes.stages.common import data_option, model_choice, training_config, training_metrics
from mobile_compress.training import TrainJob, run_train_job
from mobile_compress.training import TrainConfig


@dataclass
class TrainOptions:
    model: str
    data: str
    training: TrainConfig
    options: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    init: str | None = None
    normalization: str | None = None
    resize: int | None = None
    augment: bool = True


class TrainStage:
    kind = "train"
    consumes = None
    produces = CHECKPOINT

    def parse(self, f: Fields, ctx: ParseContext) -> TrainOptions:
        model, options = model_choice(f, "model")
        return TrainOptions(
            model=model, options=options, data=data_option(f, ctx), training=training_config(f),
            image_size=f.int("image_size"), init=f.file("init", f.str("init"), ctx.check_files, "state_dict file"),
            normalization=f.str("normalization"), resize=f.int("resize"), augment=f.bool("augment", True),
        )

    def run(self, o: TrainOptions, ctx: RunContext) -> StageResult:
        resume = ctx.resume and (ctx.stage_dir / "train_state.pt").is_file()
        result = run_train_job(TrainJob(
            model=o.model, data=o.data, out_dir=str(ctx.stage_dir), config=o.training, options=o.options,
            image_size=o.image_size, init=o.init, resume=resume, cache_dir=ctx.cache_dir, storage_size=o.resize,
            normalization=o.normalization, augment=o.augment))
        return StageResult(str(result.checkpoint), CHECKPOINT, training_metrics(result))
