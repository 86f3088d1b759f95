"""`distill`: a student zoo model trained while distilling a teacher checkpoint (or an earlier stage's)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mobile_compress.distillation import DistillConfig
from mobile_compress.distillation import DistillJob, run_distill_job
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, ParseContext, Ref, RunContext, StageResult
from workflows.recipes.stages.common import data_option, model_choice, training_config, training_metrics
from mobile_compress.training import TrainConfig
from mobile_compress.training import read_meta

DISTILL_KEYS = ("kd", "temperature", "alpha", "hint_weight", "at_weight", "rkd_distance_weight", "rkd_angle_weight",
                "hint_layers", "at_layers", "rkd_layers", "cache_teacher", "teacher_input_size")


@dataclass
class DistillOptions:
    teacher: Ref | str
    student: str
    data: str
    distill: DistillConfig
    training: TrainConfig
    options: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    normalization: str | None = None
    resize: int | None = None
    augment: bool = True


class DistillStage:
    kind = "distill"
    consumes = None
    produces = CHECKPOINT

    def parse(self, f: Fields, ctx: ParseContext) -> DistillOptions:
        teacher = ctx.ref(f, "teacher", f.required("teacher", "a teacher checkpoint directory, or @N / @train for "
                                                              "an earlier stage's"), CHECKPOINT)
        if isinstance(teacher, str) and ctx.check_files:
            f.wrap("teacher", lambda: read_meta(teacher))
        student, options = model_choice(f, "student")
        values = {k: f.raw(k) for k in DISTILL_KEYS if f.has(k)}
        distill = DistillConfig.from_dict(values, where=f.where)
        augment = f.bool("augment", True)
        if distill.cache_teacher and augment:
            raise f.error("cache_teacher", True, "needs the training images without augmentation",
                          hint="add 'augment: false' to this stage, or drop cache_teacher")
        return DistillOptions(
            teacher=teacher, student=student, options=options, data=data_option(f, ctx), distill=distill,
            training=training_config(f), image_size=f.int("image_size"), normalization=f.str("normalization"),
            resize=f.int("resize"), augment=augment,
        )

    def run(self, o: DistillOptions, ctx: RunContext) -> StageResult:
        resume = ctx.resume and (ctx.stage_dir / "train_state.pt").is_file()
        result = run_distill_job(DistillJob(
            teacher=ctx.resolve(o.teacher), student=o.student, data=o.data, out_dir=str(ctx.stage_dir),
            distill=o.distill, config=o.training, options=o.options, image_size=o.image_size, resume=resume,
            cache_dir=ctx.cache_dir, storage_size=o.resize, normalization=o.normalization, augment=o.augment))
        return StageResult(str(result.checkpoint), CHECKPOINT, training_metrics(result))
