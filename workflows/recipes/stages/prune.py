"""`prune`: structured channel pruning of the checkpoint before it, with fine-tuning (and optional self-distillation).

A ``latency=`` target prices channels with a measured per-layer latency table: ``latency_table: PATH``,
or measured in the stage folder (on the phone ``latency_device``, else on the host LiteRT interpreter)
and reused when the run resumes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from android_harness.transport import KINDS as TRANSPORT_KINDS
from mobile_compress.distillation import DistillConfig
from workflows.recipes.fields import Fields
from workflows.recipes.stages.base import CHECKPOINT, ParseContext, RunContext, StageResult
from workflows.recipes.stages.common import data_option, training_config
from workflows.recipes.stages.self_distill import parse_self_distill, teacher_hook
from mobile_compress.pruning import LatencyTable, PruneConfig, Target, parse_target
from mobile_compress.pruning import ALLOCATIONS, CRITERIA
from mobile_compress.pruning import PruneJob, default_finetune_config, run_prune_job
from mobile_compress.training import TrainConfig
from profiler.latency_table import TABLE_DELEGATES, obtain_latency_table

LATENCY_KEYS = ("latency_table", "latency_device", "latency_delegate", "latency_transport")


@dataclass
class LatencySource:
    """Where a latency target's table comes from: a saved file, or measured (on ``device``, else the host)."""

    table: str | None = None
    device: str | None = None
    delegate: str = "cpu"
    transport: str | None = None


@dataclass
class PruneOptions:
    config: PruneConfig
    data: str
    steps: int
    epochs_per_step: int
    training: TrainConfig
    distill: DistillConfig | None
    augment: bool = True
    latency: LatencySource | None = None  # set for latency targets only


class PruneStage:
    kind = "prune"
    consumes = CHECKPOINT
    produces = CHECKPOINT

    def parse(self, f: Fields, ctx: ParseContext) -> PruneOptions:
        target = f.required("target", "e.g. target: macs=0.5 (keep half of the MACs) or params=0.7")
        if target is not None and not isinstance(target, str):
            raise f.error("target", target, "is not METRIC=FRACTION, e.g. macs=0.5")
        parsed = parse_target(target, source=f.path("target"))
        latency = _latency_source(f, ctx, parsed)
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
                            augment=f.bool("augment", True), latency=latency)

    def run(self, o: PruneOptions, ctx: RunContext) -> StageResult:
        assert ctx.input is not None
        teacher = ctx.input
        factory = None
        if o.distill is not None:
            factory = lambda _unpruned, _student: [teacher_hook(teacher, o.distill)]  # noqa: E731
        table = None
        if o.latency is not None:
            table = obtain_latency_table(ctx.input, ctx.stage_dir, o.latency.table, device=o.latency.device,
                                         delegate=o.latency.delegate, transport=o.latency.transport,
                                         reuse=ctx.resume, progress=ctx.log)
        result = run_prune_job(PruneJob(
            checkpoint=ctx.input, out_dir=str(ctx.stage_dir / "prune"), config=o.config, data=o.data, steps=o.steps,
            epochs_per_step=o.epochs_per_step, train=o.training, resume=ctx.resume and (ctx.stage_dir / "prune").is_dir(),
            latency_table=table.table if table else None, cache_dir=ctx.cache_dir, hook_factory=factory, log=ctx.log,
            augment=o.augment))
        metrics: dict[str, Any] = {
            "top1": result.top1, "top1_before": result.top1_before, "macs_before": result.macs_before,
            "macs_after": result.macs_after, "params_before": result.params_before,
            "params_after": result.params_after, "steps": len(result.steps)}
        if table is not None:  # the table's prices of the input and of the result
            metrics.update(latency_table=str(table.path),
                           latency_before_ms=result.steps[0]["prune"].get("latency_before_ms"),
                           latency_after_ms=result.steps[-1]["prune"].get("latency_after_ms"))
        return StageResult(str(result.checkpoint), CHECKPOINT, metrics)


def _latency_source(f: Fields, ctx: ParseContext, target: Target) -> LatencySource | None:
    """The ``latency_*`` options: only with a latency target, a table file or a device (not both)."""
    given = [key for key in LATENCY_KEYS if f.has(key)]
    if target.metric != "latency":
        if given:
            raise f.error(given[0], f.raw(given[0]), f"applies to latency targets only, and the target is {target}",
                          hint=f"use target: latency=0.6, or drop {given[0]}")
        return None
    table = f.file("latency_table", f.str("latency_table"), ctx.check_files, "latency table (JSON)")
    device = f.str("latency_device")
    if table is not None and device is not None:
        raise f.error("latency_device", device, "is not used when latency_table is given",
                      hint="give latency_table (a saved table) or latency_device (measure on that phone), not both")
    if table is not None and ctx.check_files:
        f.wrap("latency_table", lambda: LatencyTable.load(table))
    for key in ("latency_delegate", "latency_transport"):
        if device is None and key in given:
            raise f.error(key, f.raw(key), "applies with latency_device only (the host interpreter is XNNPACK)",
                          hint="add latency_device: SERIAL, or drop " + key)
    delegate = f.choice("latency_delegate", TABLE_DELEGATES, "cpu")
    transport = f.raw("latency_transport")
    if transport is not None and transport not in TRANSPORT_KINDS:
        raise f.error("latency_transport", transport, f"is not one of {', '.join(TRANSPORT_KINDS)}")
    return LatencySource(table=table, device=device, delegate=delegate, transport=transport)
