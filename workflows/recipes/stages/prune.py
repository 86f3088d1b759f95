"""`prune`: structured channel pruning of the checkpoint before it, with fine-tuning (and optional self-distillation)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mobile_compress.distillation import DistillConfig
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, ParseContext, RunContext, StageResult
from workflows.recipes.stages.common import data_option, training_config
from workflows.recipes.stages.self_distill import parse_self_distill, teacher_hook
from mobile_compress.pruning import PruneConfig, parse_target
from mobile_compress.pruning import ALLOCATIONS, CRITERIA
from mobile_compress.pruning import PruneJob, default_finetune_config, run_prune_job
from mobile_compress.training import TrainConfig


@dataclass
class PruneOptions:
    config: PruneConfig
    data: str
    steps: int
    epochs_per_step: int
    training: TrainConfig
    distill: DistillConfig | None
    augment: bool = True


class PruneStage:
    kind = "prune"
    consumes = CHECKPOINT
    produces = CHECKPOINT

    def parse(self, f: Fields, ctx: ParseContext) -> PruneOptions:
        target = f.required("target", "e.g. target: macs=0.5 (keep half of the MACs) or params=0.7")
        if target is not None and not isinstance(target, str):
            raise f.error("target", target, "is not METRIC=FRACTION, e.g. macs=0.5")
        parsed = parse_target(target, source=f.path("target"))
        if parsed.metric == "latency":
            raise f.error("target", target, "needs a measured latency table, which recipes do not take yet",
                          hint="use macs=... or params=..., or run `mobile-compress prune --latency-table`")
        values: dict[str, Any] = {"target": parsed,
                                  "criterion": f.choice("criterion", CRITERIA, "l1"),
                                  "allocation": f.choice("allocation", ALLOCATIONS, "global"),
                                  "multiple": f.int("multiple", 8),
                                  "min_keep": f.raw("min_keep", 0.0),  # PruneConfig checks it
                                  "protect": tuple(f.str_list("protect", []) or ()),
                                  "taylor_batches": f.int("taylor_batches", 8)}
        config = f.wrap(None, lambda: PruneConfig(**values))
        return PruneOptions(config=config, data=data_option(f, ctx), steps=f.int("steps", 1),
                            epochs_per_step=f.int("epochs_per_step", 1, minimum=0),
                            training=training_config(f, base=default_finetune_config()), distill=parse_self_distill(f),
                            augment=f.bool("augment", True))

    def run(self, o: PruneOptions, ctx: RunContext) -> StageResult:
        assert ctx.input is not None
        teacher = ctx.input
        factory = None
        if o.distill is not None:
            factory = lambda _unpruned, _student: [teacher_hook(teacher, o.distill)]  # noqa: E731
        result = run_prune_job(PruneJob(
            checkpoint=ctx.input, out_dir=str(ctx.stage_dir / "prune"), config=o.config, data=o.data, steps=o.steps,
            epochs_per_step=o.epochs_per_step, train=o.training, resume=ctx.resume and (ctx.stage_dir / "prune").is_dir(),
            cache_dir=ctx.cache_dir, hook_factory=factory, log=ctx.log, augment=o.augment))
        return StageResult(str(result.checkpoint), CHECKPOINT, {
            "top1": result.top1, "top1_before": result.top1_before, "macs_before": result.macs_before,
            "macs_after": result.macs_after, "params_before": result.params_before,
            "params_after": result.params_after, "steps": len(result.steps)})
