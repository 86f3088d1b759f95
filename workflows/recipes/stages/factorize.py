"""`factorize`: low-rank factorisation (SVD / Tucker-2) of the checkpoint before it, then fine-tuning."""
from __future__ import annotations

from dataclasses import dataclass

from mobile_compress.lowrank import FactorizeConfig
from mobile_compress.lowrank import FactorizeJob, default_finetune_config, run_factorize_job
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, ParseContext, RunContext, StageResult
from workflows.recipes.stages.common import data_option, training_config
from mobile_compress.training import TrainConfig


@dataclass
class FactorizeOptions:
    config: FactorizeConfig
    data: str
    training: TrainConfig | None


class FactorizeStage:
    kind = "factorize"
    consumes = CHECKPOINT
    produces = CHECKPOINT

    def parse(self, f: Fields, ctx: ParseContext) -> FactorizeOptions:
        values = {"energy": f.number("energy", None, low=0.0, high=1.0, what="a fraction in (0, 1]"),
                  "target": f.str("target"), "multiple": f.int("multiple", 8),
                  "include": tuple(f.str_list("include", []) or ()), "exclude": tuple(f.str_list("exclude", []) or ()),
                  "hooi_iterations": f.int("hooi_iterations", 2, minimum=0)}
        config = f.wrap(None, lambda: _validated(FactorizeConfig(**values)))
        training = training_config(f, base=default_finetune_config()) if f.has("training") else None
        if training is None:
            f.raw("training")
        return FactorizeOptions(config=config, data=data_option(f, ctx), training=training)

    def run(self, o: FactorizeOptions, ctx: RunContext) -> StageResult:
        assert ctx.input is not None
        resume = ctx.resume and (ctx.stage_dir / "factorized" / "checkpoint.json").is_file()
        result = run_factorize_job(FactorizeJob(checkpoint=ctx.input, out_dir=str(ctx.stage_dir), config=o.config,
                                                data=o.data, train=o.training, resume=resume,
                                                cache_dir=ctx.cache_dir, log=ctx.log))
        artifact = result.finetuned or result.factorized
        return StageResult(str(artifact), CHECKPOINT, {"accuracy": result.accuracy,
                                                       "params_before": result.report.get("params_before"),
                                                       "params_after": result.report.get("params_after"),
                                                       "macs_before": result.report.get("macs_before"),
                                                       "macs_after": result.report.get("macs_after")})


def _validated(config: FactorizeConfig) -> FactorizeConfig:
    config.validate(need_input_size=False)
    return config
