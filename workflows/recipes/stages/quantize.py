"""`quantize`: QAT (or PTQ) of the checkpoint before it into a fake-quant checkpoint the converter makes int8."""
from __future__ import annotations

from dataclasses import dataclass

from mobile_compress.distillation import DistillConfig
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, ParseContext, RunContext, StageResult
from workflows.recipes.stages.common import data_option, training_config
from workflows.recipes.stages.self_distill import parse_self_distill, teacher_hook
from mobile_compress.quantization import METHODS, QuantizeJob
from workflows.compress import quantize_and_convert
from mobile_compress.quantization import default_qat_config
from mobile_compress.training import TrainConfig


@dataclass
class QuantizeOptions:
    method: str
    data: str
    training: TrainConfig
    calib_images: int
    freeze_bn_at: float
    freeze_observers_at: float
    distill: DistillConfig | None
    augment: bool = True


class QuantizeStage:
    kind = "quantize"
    consumes = CHECKPOINT
    produces = CHECKPOINT

    def parse(self, f: Fields, ctx: ParseContext) -> QuantizeOptions:
        method = f.choice("method", METHODS, "qat")
        training = training_config(f, base=default_qat_config())
        distill = parse_self_distill(f)
        if distill is not None and method != "qat":
            raise f.error("distill", f.raw("distill"), "only applies to method qat (PTQ does not train)")
        options = QuantizeOptions(
            method=method, data=data_option(f, ctx), training=training, calib_images=f.int("calib_images", 512),
            freeze_bn_at=f.number("freeze_bn_at", 0.5, low=-1e-12, high=1.0, what="a fraction in [0, 1]"),
            freeze_observers_at=f.number("freeze_observers_at", 0.75, low=-1e-12, high=1.0,
                                         what="a fraction in [0, 1]"),
            distill=distill, augment=f.bool("augment", True))
        return options

    def run(self, o: QuantizeOptions, ctx: RunContext) -> StageResult:
        assert ctx.input is not None
        hooks = [teacher_hook(ctx.input, o.distill)] if o.distill is not None else []
        result = quantize_and_convert(QuantizeJob(  # the recipe's convert stage makes the .tflite
            checkpoint=ctx.input, out_dir=str(ctx.stage_dir), method=o.method, data=o.data, config=o.training,
            calib_images=o.calib_images, freeze_bn_at=o.freeze_bn_at, freeze_observers_at=o.freeze_observers_at,
            cache_dir=ctx.cache_dir, resume=ctx.resume and (ctx.stage_dir / "train_state.pt").is_file(),
            hooks=hooks, augment=o.augment)).job
        return StageResult(str(result.checkpoint), CHECKPOINT, {
            "method": result.method, "float_top1": result.float_eval.top1,
            "quantized_top1": result.quantized_eval.top1, "calib_images": result.calib_images})
